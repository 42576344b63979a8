"""Where the proxy score's seed-to-seed noise comes from, and what the recipe does about it (README "Proxy noise").

The panel is nas calibrate's at 4.8G (the presets within it and 8 drawn points: 20 networks). Every training is
scored on one fixed set of held-out images (the data's test split), so what moves between runs is training alone;
the held-out sample's own share is binomial (p(1 - p) / n per network), computed, not trained.

    python benchmarks/proxy_noise.py decompose   # one source of randomness changed at a time (old training recipe)
    python benchmarks/proxy_noise.py recipes     # seeds 0 and 1 of each recipe: tau, largest move, reference tau, seconds
    python benchmarks/proxy_noise.py recipes --recipes new --seeds 4   # and the mean of 2 seeds against 2 others
    python benchmarks/proxy_noise.py report      # the figures, from the runs recorded so far

Runs are appended to benchmarks/proxy-noise-runs.jsonl (--runs), one line per training, so an interrupted run
continues where it stopped. `--jobs 2` trains two networks at once, one thread each (the CPU count of this machine).

Decomposition: the base run has every seed 0; a variant sets one source to seed 1: `init` (initial weights),
`order` (batch order and flips), `subset` (which training images), `all` (all three: another seed, as a user sees
it). A source's share of the seed-to-seed variance is the mean over networks of (variant - base)^2 / 2 over that
of `all`; its rank effect is Kendall tau between base and variant.

Recipes: "old" is the recipe before issue 17 (500 held-out images drawn from the training images with the seed,
evaluated every half epoch, no clipping, BatchNorm running averages); "new" the default; further ones below.
Seed-to-seed agreement is Kendall tau (with a bootstrap interval over networks) between seeds 0 and 1, and each
network's move |seed 0 - seed 1|; agreement with the reference is tau against the 4-epoch, 5000-image reference of
the shipped calibration (benchmarks/calibration-unified-fashion-mnist.csv.gz); cost is the seconds of a trial
(training and evaluations) as the search runs it (pareto: evaluated at its rungs), medians over the panel.
With 4 seeds or more, the frontier's next point: what `--proxy-seeds 2` buys at twice the cost, as Kendall tau
between the mean of two seeds and the mean of two others (each of the 3 ways to split seeds 0-3), beside one
seed against another (each of the 6 pairs); the reference of the default's own calibration (`nas calibrate`,
benchmarks/calibration-default-fashion-mnist.csv.gz) is used beside the shipped one where it is there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BUDGET = 4_800_000_000
REFERENCE_CSV = HERE / "calibration-unified-fashion-mnist.csv.gz"
DEFAULT_CALIBRATION_CSV = HERE / "calibration-default-fashion-mnist.csv.gz"  # the default recipe's nas calibrate
SOURCES = ("init", "order", "subset", "all")
OLD_HELD_OUT = 500


def recipes() -> dict:
    from trials import ProxyRecipe
    from trials.recipe import EARLIER_DEFAULT

    old, new = EARLIER_DEFAULT, ProxyRecipe()
    return {
        "old": (old, [0.5, 1, 1.5]),  # the old trainable evaluated every half epoch under pareto
        "old-fixed-held-out": (replace(new, clip_grad=0.0, bn_batches=0), [0.5, 1]),  # decomposition's recipe
        "new": (new, [0.5, 1]),
        "new-3000-images": (replace(new, subset=3000), [0.5, 1]),
        "new-rungs-500": (replace(new, rung_val_size=500), [0.5, 1]),
        "new-rungs-500-bn-8": (replace(new, rung_val_size=500, bn_batches=8), [0.5, 1]),
    }


def panel():
    from nas.calibrate import default_panel

    return default_panel(None, BUDGET, 8, 0)


def _train(job: dict) -> dict:
    """One training of one network (a worker process, one thread): its final top-1 and its seconds."""
    import torch

    torch.set_num_threads(1)
    from searchspace import ArchSpec
    from trials import TrialFailed, load_proxy_data, train_proxy

    recipe, evaluate_at = recipes()[job["recipe"]]
    seeds = job["seeds"]
    recipe = replace(recipe, seed=seeds["init"])
    data = load_proxy_data(None, recipe.resolution, recipe.subset, recipe.val_size, seeds["subset"], recipe.held_out_from)
    spec = ArchSpec.model_validate(job["spec"])
    started = time.perf_counter()
    try:
        last = list(train_proxy(spec, data, recipe, evaluate_at=evaluate_at, init_seed=seeds["init"], order_seed=seeds["order"]))[-1]
        outcome = {"top1": last.proxy_top1, "train_seconds": last.train_seconds, "eval_seconds": last.eval_seconds}
    except TrialFailed as exc:
        outcome = {"top1": None, "failure": str(exc)}
    return {**job, **outcome, "seconds": time.perf_counter() - started, "spec": None}


def run(jobs: list[dict], path: Path, workers: int) -> None:
    done = {(r["recipe"], r["variant"], r["point"]) for r in load(path)}
    todo = [j for j in jobs if (j["recipe"], j["variant"], j["point"]) not in done]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} trainings recorded; {len(todo)} to train, {workers} at once", flush=True)
    with ProcessPoolExecutor(workers) as pool, open(path, "a") as out:
        for i, result in enumerate(pool.map(_train, todo), 1):
            out.write(json.dumps({k: v for k, v in result.items() if k != "spec"}) + "\n")
            out.flush()
            top1 = "failed" if result["top1"] is None else f"{result['top1']:.2f}"
            print(f"[{i}/{len(todo)}] {result['recipe']} {result['variant']} {result['label']}: {top1} in {result['seconds']:.0f} s", flush=True)


def jobs_for(recipe: str, variants: dict[str, dict]) -> list[dict]:
    return [
        {"recipe": recipe, "variant": name, "seeds": seeds, "point": spec.id, "label": spec.label, "spec": spec.to_dict()}
        for name, seeds in variants.items() for spec in panel()
    ]


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- figures -----------------------------------------------------------------------------------------------
def scores(runs: list[dict], recipe: str, variant: str) -> dict[str, float]:
    return {r["point"]: r["top1"] for r in runs if r["recipe"] == recipe and r["variant"] == variant and r["top1"] is not None}


def tau_with_interval(a: dict, b: dict, repeats: int = 2000) -> tuple[float, float, float, int]:
    """Kendall tau over the networks both score, with a 95% bootstrap interval over networks."""
    keys = sorted(set(a) & set(b))
    x, y = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    tau = stats.kendalltau(x, y).statistic
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(repeats):
        i = rng.integers(0, len(keys), len(keys))
        if len(set(i)) > 2:
            boots.append(stats.kendalltau(x[i], y[i]).statistic)
    low, high = np.nanpercentile(boots, [2.5, 97.5])
    return tau, low, high, len(keys)


def reference_scores(path: Path = REFERENCE_CSV) -> dict[str, float]:
    import pandas as pd

    table = pd.read_csv(path)
    reference = table[table.role == "reference"].dropna(subset=["top1"])
    return dict(zip(reference.point, reference.top1))


def seed_scores(runs: list[dict], recipe: str) -> list[dict[str, float]]:
    """The recipe's scores by seed (seed0, seed1, ...), as far as they go without a gap."""
    found = []
    while by_seed := scores(runs, recipe, f"seed{len(found)}"):
        found.append(by_seed)
    return found


def averaged_seeds(runs: list[dict], recipe: str, reference: dict) -> dict | None:
    """One seed against another (all pairs) beside the mean of two seeds against the mean of two others (all
    splits of seeds 0-3): what averaging two seeds buys. None below 4 seeds."""
    by_seed = seed_scores(runs, recipe)
    if len(by_seed) < 4:
        return None
    keys = sorted(set.intersection(*(set(s) for s in by_seed[:4])))
    single = [stats.kendalltau([a[k] for k in keys], [b[k] for k in keys]).statistic
              for i, a in enumerate(by_seed[:4]) for b in by_seed[i + 1 : 4]]
    mean = lambda i, j: {k: (by_seed[i][k] + by_seed[j][k]) / 2 for k in keys}  # noqa: E731
    splits = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    paired = [tau_with_interval(mean(*x), mean(*y)) for x, y in splits]
    moves = [abs(mean(*x)[k] - mean(*y)[k]) for x, y in splits for k in keys]
    return {
        "networks": len(keys), "single_taus": single, "pair_taus": [t[0] for t in paired],
        "pair_interval": paired[0][1:3], "pair_largest_move": max(moves), "pair_over_5": sum(m > 5 for m in moves) / 3,
        "pair_median_move": float(np.median(moves)),
        "reference_tau": tau_with_interval({k: np.mean([s[k] for s in by_seed[:4]]) for k in keys}, reference)[:3],
        **_close_pairs([[s[k] for s in by_seed[:4]] for k in keys]),
    }


def _close_pairs(scores: list[list[float]]) -> dict:
    """Why ranks swap: one score's noise (pooled over each network's seeds) and the share of network pairs whose
    means of all seeds lie closer than the noise of a difference of two scores (noise x sqrt 2)."""
    noise = float(np.sqrt(np.mean([np.var(s, ddof=1) for s in scores])))
    means = [float(np.mean(s)) for s in scores]
    pairs = [(a, b) for i, a in enumerate(means) for b in means[i + 1 :]]
    return {"noise": noise, "close_pairs": sum(abs(a - b) < noise * math.sqrt(2) for a, b in pairs), "pairs": len(pairs)}


def decomposition(runs: list[dict], recipe: str = "old-fixed-held-out") -> list[tuple]:
    base = scores(runs, recipe, "base")
    rows, total = [], None
    variances = {}
    for source in SOURCES:
        other = scores(runs, recipe, source)
        keys = sorted(set(base) & set(other))
        if not keys:
            continue
        variances[source] = float(np.mean([(base[k] - other[k]) ** 2 / 2 for k in keys]))
    total = variances.get("all")
    for source, variance in variances.items():
        other = scores(runs, recipe, source)
        tau, low, high, n = tau_with_interval(base, other)
        share = f"{variance / total:.0%}" if total else "-"
        rows.append((source, f"{variance:.2f}", share, f"{tau:.2f} [{low:.2f}, {high:.2f}]", n))
    if base:
        p = np.array(list(base.values())) / 100
        for images in (OLD_HELD_OUT, 5000):
            variance = float(np.mean(p * (1 - p) / images)) * 1e4
            rows.append((f"held-out sample, {images} images", f"{variance:.2f}", f"{variance / total:.0%}" if total else "-", "(binomial)", len(base)))
    return rows


def recipe_figures(runs: list[dict], recipe: str, reference: dict) -> dict | None:
    first, second = scores(runs, recipe, "seed0"), scores(runs, recipe, "seed1")
    keys = sorted(set(first) & set(second))
    if len(keys) < 3:
        return None
    tau, low, high, n = tau_with_interval(first, second)
    moves = {k: abs(first[k] - second[k]) for k in keys}
    mean = {k: (first[k] + second[k]) / 2 for k in keys}
    ref_tau, ref_low, ref_high, ref_n = tau_with_interval(mean, reference)
    label = {r["point"]: r["label"] for r in runs}
    worst = max(moves, key=moves.get)
    timed = [r for r in runs if r["recipe"] == recipe and r["variant"] in ("seed0", "seed1") and r["top1"] is not None]
    failed = [r for r in runs if r["recipe"] == recipe and r["variant"] in ("seed0", "seed1") and r["top1"] is None]
    return {
        "recipe": recipe, "networks": n, "tau": tau, "tau_interval": (low, high),
        "spearman": stats.spearmanr([first[k] for k in keys], [second[k] for k in keys]).statistic,
        "median_move": float(np.median(list(moves.values()))), "largest_move": moves[worst], "largest_mover": label[worst],
        "over_5_points": sum(m > 5 for m in moves.values()), "mean_top1": float(np.mean(list(mean.values()))),
        "reference_tau": ref_tau, "reference_interval": (ref_low, ref_high), "reference_n": ref_n,
        "seconds_per_trial": float(np.median([r["train_seconds"] + r["eval_seconds"] for r in timed])),
        "eval_share": float(np.median([r["eval_seconds"] / (r["train_seconds"] + r["eval_seconds"]) for r in timed])),
        "failed": [f"{r['label']}: {r['failure']}" for r in failed],
    }


def paired_cost(runs: list[dict]) -> dict[str, tuple]:
    """Each recipe's seconds per trial over old's for the same network and seed: `recipes` interleaves them, so
    the two ran at once on the two workers, under one load."""
    seconds = {(r["recipe"], r["variant"], r["point"]): r["train_seconds"] + r["eval_seconds"] for r in runs if r["top1"] is not None}
    out = {}
    for recipe in {r["recipe"] for r in runs} - {"old"}:
        ratios = [v / seconds[("old", variant, point)] for (name, variant, point), v in seconds.items()
                  if name == recipe and variant in ("seed0", "seed1") and ("old", variant, point) in seconds]
        if ratios:
            out[recipe] = (float(np.median(ratios)), *np.percentile(ratios, [25, 75]), len(ratios))
    return out


def report(path: Path) -> None:
    runs = load(path)
    rows = decomposition(runs)
    if rows:
        print("Decomposition (old training recipe, every training scored on the same 5000 test images):")
        print(f"  {'source':32} {'variance':>9} {'share':>6}  {'tau base-variant':22} n")
        for source, variance, share, tau, n in rows:
            print(f"  {source:32} {variance:>9} {share:>6}  {tau:22} {n}")
    reference = reference_scores()
    figures = [f for f in (recipe_figures(runs, name, reference) for name in recipes()) if f]
    if figures:
        base = next((f["seconds_per_trial"] for f in figures if f["recipe"] == "old"), None)
        paired = paired_cost(runs)
        print("\nRecipes (seeds 0 and 1 over the panel; medians of seconds per trial, one thread, this machine's load):")
        for f in figures:
            cost = f" ({f['seconds_per_trial'] / base:.2f}x old)" if base else ""
            print(
                f"  {f['recipe']:20} seed tau {f['tau']:.3f} [{f['tau_interval'][0]:.2f}, {f['tau_interval'][1]:.2f}] "
                f"(Spearman {f['spearman']:.2f}, n {f['networks']}), median move {f['median_move']:.2f}, largest {f['largest_move']:.1f} "
                f"({f['largest_mover']}), >5 points {f['over_5_points']}, mean top-1 {f['mean_top1']:.1f}; "
                f"vs reference tau {f['reference_tau']:.3f} [{f['reference_interval'][0]:.2f}, {f['reference_interval'][1]:.2f}] "
                f"(n {f['reference_n']}); {f['seconds_per_trial']:.1f} s per trial{cost}, evaluations {f['eval_share']:.0%}"
            )
            if f["recipe"] in paired:
                ratio, low, high, n = paired[f["recipe"]]
                print(f"      seconds per trial against old, trained side by side (same network, seed, load): median {ratio:.2f}x, "
                      f"interquartile {low:.2f}-{high:.2f}x over {n} pairs")
            for failure in f["failed"]:
                print(f"      failed: {failure}")
            averaged = averaged_seeds(runs, f["recipe"], reference)
            if averaged:
                single, pairs = averaged["single_taus"], averaged["pair_taus"]
                low, high = averaged["pair_interval"]
                print(f"      seeds 0-3 (n {averaged['networks']}): one seed against another, tau median {np.median(single):.3f} "
                      f"[{min(single):.2f}-{max(single):.2f} over the 6 pairs]; mean of 2 seeds against mean of 2 others "
                      f"(--proxy-seeds 2, 2x the cost): median {np.median(pairs):.3f} [{min(pairs):.2f}-{max(pairs):.2f} over "
                      f"the 3 splits; {pairs[0]:.2f} [{low:.2f}, {high:.2f}] for 0+1 vs 2+3], median move {averaged['pair_median_move']:.2f}, "
                      f"largest {averaged['pair_largest_move']:.1f}, > 5 points {averaged['pair_over_5']:.1f} a split; mean of 4 vs reference "
                      f"tau {averaged['reference_tau'][0]:.3f} [{averaged['reference_tau'][1]:.2f}, {averaged['reference_tau'][2]:.2f}]")
                print(f"      one score's noise {averaged['noise']:.2f} points (pooled over the 4 seeds); {averaged['close_pairs']} of "
                      f"{averaged['pairs']} network pairs have means of 4 seeds closer than a difference's noise "
                      f"({averaged['noise'] * math.sqrt(2):.2f}): their order is what moves between seeds")
    if figures and DEFAULT_CALIBRATION_CSV.exists():
        own = reference_scores(DEFAULT_CALIBRATION_CSV)
        print(f"\nAgainst the default's own reference ({DEFAULT_CALIBRATION_CSV.name}: the reference recipe with 5000 test "
              f"images, clipping and BatchNorm re-estimation; {len(own)} networks), mean of seeds 0 and 1 (of 0-3 where there):")
        for f in figures:
            by_seed = seed_scores(runs, f["recipe"])
            for count in sorted({2, len(by_seed)}):
                keys = set.intersection(*(set(s) for s in by_seed[:count]))
                tau, low, high, n = tau_with_interval({k: np.mean([s[k] for s in by_seed[:count]]) for k in keys}, own)
                print(f"  {f['recipe']:20} {count} seeds: tau {tau:.3f} [{low:.2f}, {high:.2f}] (n {n})")
    print(f"\nload average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["decompose", "recipes", "cost", "report"])
    parser.add_argument("--recipes", default="old,new", help="For `recipes`: which (%(default)s; also new-3000-images).")
    parser.add_argument("--runs", type=Path, default=HERE / "proxy-noise-runs.jsonl")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--networks", type=int, default=20, help="For `cost`: N networks spread over the panel.")
    parser.add_argument("--seeds", type=int, default=2, help="For `recipes`: seeds 0 to N-1 of each (4: what 2 seeds buy).")
    args = parser.parse_args()
    zero = {"init": 0, "order": 0, "subset": 0}
    if args.what == "decompose":
        variants = {"base": zero, **{s: {**zero, s: 1} for s in SOURCES[:-1]}, "all": {k: 1 for k in zero}}
        run(jobs_for("old-fixed-held-out", variants), args.runs, args.jobs)
    elif args.what == "recipes":
        names = args.recipes.split(",")
        for name in names:
            if name not in recipes():
                parser.error(f"unknown recipe {name!r} (recipes: {', '.join(recipes())})")
        seeds = {f"seed{i}": {k: i for k in zero} for i in range(args.seeds)}
        per_recipe = [jobs_for(name, seeds) for name in names]
        run([job for same_point in zip(*per_recipe) for job in same_point], args.runs, args.jobs)  # interleaved: one load for all
    elif args.what == "cost":
        names = args.recipes.split(",")
        per_recipe = [jobs_for(name, {"cost": zero})[:: max(1, 20 // args.networks)][: args.networks] for name in names]
        run([job for same_point in zip(*per_recipe) for job in same_point], args.runs, args.jobs)
    report(args.runs)
    if args.what == "cost":
        print_cost(load(args.runs), args.recipes.split(","))


def print_cost(runs: list[dict], names: list[str]) -> None:
    """Seconds per trial of each recipe against the first, network by network (trained in turn, one load)."""
    seconds = {n: {r["point"]: r["train_seconds"] + r["eval_seconds"] for r in runs if r["recipe"] == n and r["variant"] == "cost" and r["top1"] is not None} for n in names}
    base = seconds[names[0]]
    print(f"\nSeconds per trial against {names[0]} (median ratio over networks, [min, max]):")
    for name in names[1:]:
        ratios = [seconds[name][k] / base[k] for k in base if k in seconds[name]]
        if ratios:
            print(f"  {name:22} {np.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}] over {len(ratios)} networks")


if __name__ == "__main__":
    main()
