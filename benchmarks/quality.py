"""Search quality: the hypervolume of the front against simulated wall-clock for random search, TPE, NSGA-II
and GP, each with the pareto (MO-ASHA), asha and no scheduler, replayed against the benchmark table.

Prints, measured in this run (nas.replay: the real searcher, samplers and schedulers; training looked up):
- per sampler x scheduler over --seeds seeds: hypervolume at a quarter, half and all of the budget, as
  median [interquartile range], with the trials completed, stopped by the scheduler at each rung and
  pruned (stopped, or cut by the budget) per replay and the sampler's own seconds per suggestion (real
  time, not on the simulated clock);
- a two-sided Mann-Whitney U test of the final hypervolume against random search with the same scheduler
  and with no scheduler, and of pareto against asha with the same sampler, Holm-corrected over all these
  comparisons: a difference is called better or worse only at corrected p < 0.05, otherwise "within the
  noise"; each with the ratio of the medians and its 95% bootstrap interval;
- how far the replay's stand-in points lie from the sampler's draws (Gower distance, MACs ratio);
- Spearman's rho of each zero-cost proxy, and of MACs and params alone, with the table's trained top-1;
- a PNG of the median curves with their interquartile bands (Plotly through kaleido and Chromium);
- last, the README's "Search quality" figures as Markdown, to paste.

`--only latency` (the table must hold latency: `nas bench latency`): a latency-aware search (objectives top-1
and latency) against a MACs-only search (top-1 and MACs, the default), and the search `nas search --latency`
runs (top-1, MACs and latency), each sampler of --samplers with the pareto scheduler over --seeds seeds at the
same simulated budget; every search's complete points scored by the hypervolume in (top-1, latency) (and in
(top-1, MACs)): median ratio against the MACs-only search with its 95% bootstrap interval and a two-sided
Mann-Whitney U test, Holm-corrected over these comparisons; with MACs against latency on the table (Kendall tau
over its points and within 2.4-4.8 GMACs).

The hypervolume is dashboards.pareto's, the project's one: objectives normalised to the table front's box,
up to the reference point printed with it.

GP is left out unless named in --samplers: Optuna's GPSampler takes about 10 s per suggestion on the unified
space (43-50 modelled dimensions, two objectives and the budget constraint; measured on 2 shared cores),
so its 30 replays take an hour or more where the other samplers' 90 take a few minutes.

    python benchmarks/quality.py [--table PATH] [--seeds 10] [--samplers random,tpe,nsga2[,gp]] [--workers 2]
        [--budget-seconds T] [--processes 2] [--png benchmarks/quality.png] [--json]
    python benchmarks/quality.py --only latency [--seeds 20] [--samplers random,tpe,nsga2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards.pareto import REFERENCE
from nas.bench import DEFAULT_TABLE, Table, spearman_table

FIDELITY_RUNS = Path(__file__).with_name("calibration-unified-fashion-mnist.csv.gz")

SAMPLERS = ("random", "tpe", "nsga2", "gp")
SCHEDULERS = ("pareto", "asha", "none")
CHECKPOINTS = (0.25, 0.5, 1.0)  # shares of the budget the hypervolume is compared at
CURVE_POINTS = 101
# The latency comparison (--only latency): the searches, by their objectives, and the objectives they are scored in
MACS_ONLY, LATENCY_AWARE, BOTH = ("top1", "macs"), ("top1", "latency"), ("top1", "macs", "latency")
SEARCHES = {MACS_ONLY: "MACs-only", LATENCY_AWARE: "latency-aware", BOTH: "MACs and latency (nas search --latency)"}
SCORED = (LATENCY_AWARE, MACS_ONLY)


def _start_worker(path: str) -> None:
    import torch

    torch.set_num_threads(1)  # one replay per core; GP's torch would otherwise take every core
    global _TABLE
    _TABLE = Table.load(path)


def _replay(job: tuple) -> dict:
    """One replay; with objectives (a 6th element), also its complete points scored in (top-1, latency) and
    (top-1, MACs) whatever it searched on."""
    from nas.replay import replay

    sampler, scheduler, seed, workers, budget, *rest = job
    objectives = tuple(rest[0]) if rest else ("top1", "macs")
    run = replay(_TABLE, sampler, scheduler, seed, workers, budget, objectives=objectives)
    summary = run.summary()
    summary["fidelity"] = run.fidelity
    if rest:
        summary["scored"] = {",".join(o): run.trace_in(_TABLE, o) for o in SCORED}
    return summary


def run_all(path: str, samplers, seeds: int, workers: int, budget: float | None, processes: int, objectives=None) -> list[dict]:
    # slowest first, so the processes finish together: GP, then the schedulers that start the most trials
    if objectives is None:
        jobs = [(s, p, seed, workers, budget) for s in reversed(samplers) for p in SCHEDULERS for seed in range(seeds)]
    else:  # the latency comparison: each set of objectives with the pareto scheduler
        jobs = [(s, "pareto", seed, workers, budget, o) for s in reversed(samplers) for o in objectives for seed in range(seeds)]
    if processes <= 1:
        _start_worker(path)
        return [_replay(job) for job in jobs]
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(path,)) as pool:
        return list(pool.map(_replay, jobs))


def hypervolume_at(trace, seconds: float) -> float:
    return max((hv for t, hv in trace if t <= seconds), default=0.0)


def quartiles(values) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(median), float(q3)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone)."""
    order = np.argsort(p_values)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def ratio_interval(mine, theirs, resamples: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the ratio of two medians (seeds resampled within each strategy)."""
    rng = np.random.default_rng(seed)
    a = np.median(rng.choice(mine, (resamples, len(mine))), axis=1)
    b = np.median(rng.choice(theirs, (resamples, len(theirs))), axis=1)
    ratios = a / np.where(b > 0, b, np.nan)
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def compare(runs: list[dict], samplers) -> list[dict]:
    """Final hypervolume of each strategy against random search with its scheduler and with none, and of the
    pareto scheduler against asha with the same sampler."""
    from scipy.stats import mannwhitneyu

    final = {(r["sampler"], r["scheduler"]): [] for r in runs}
    for r in runs:
        final[(r["sampler"], r["scheduler"])].append(r["hypervolume"])
    pairs = [
        ((sampler, scheduler), baseline)
        for sampler in samplers for scheduler in SCHEDULERS
        for baseline in sorted({("random", scheduler), ("random", "none")} - {(sampler, scheduler)})
    ] + [((sampler, "pareto"), (sampler, "asha")) for sampler in samplers]
    rows = []
    for strategy, baseline in pairs:
        if strategy not in final or baseline not in final:
            continue
        mine, theirs = final[strategy], final[baseline]
        test = mannwhitneyu(mine, theirs, alternative="two-sided")
        rows.append({
            "strategy": "+".join(strategy), "against": "+".join(baseline),
            "median_difference": float(np.median(mine) - np.median(theirs)),
            "median_ratio": float(np.median(mine) / np.median(theirs)), "ratio_ci": ratio_interval(mine, theirs),
            "u": float(test.statistic), "p": float(test.pvalue), "n": (len(mine), len(theirs)),
        })
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
        if adjusted < 0.05:
            row["verdict"] = "better" if row["u"] > row["n"][0] * row["n"][1] / 2 else "worse"
        else:
            row["verdict"] = "within the noise"
    return rows


def draw_png(curves: dict, budget: float, samplers, path: Path) -> str | None:
    """Median hypervolume curves with interquartile bands, one panel per scheduler; None, or why not drawn."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(SCHEDULERS), shared_yaxes=True, subplot_titles=[f"scheduler: {s}" for s in SCHEDULERS])
    minutes = np.linspace(0, budget, CURVE_POINTS) / 60
    for col, scheduler in enumerate(SCHEDULERS, start=1):
        for i, sampler in enumerate(samplers):
            grid = curves.get((sampler, scheduler))
            if grid is None:
                continue
            q1, median, q3 = np.percentile(grid, [25, 50, 75], axis=0)
            colour = qualitative.Plotly[i % len(qualitative.Plotly)]
            red, green, blue = (int(colour[k : k + 2], 16) for k in (1, 3, 5))
            band = {"mode": "lines", "line": {"width": 0, "color": colour, "shape": "hv"}, "showlegend": False, "hoverinfo": "skip", "legendgroup": sampler}
            fig.add_trace(go.Scatter(x=minutes, y=q1, **band), row=1, col=col)
            fig.add_trace(go.Scatter(x=minutes, y=q3, fill="tonexty", fillcolor=f"rgba({red},{green},{blue},0.15)", **band), row=1, col=col)
            fig.add_trace(
                go.Scatter(x=minutes, y=median, mode="lines", name=sampler, line={"color": colour, "shape": "hv"}, legendgroup=sampler, showlegend=col == 1),
                row=1, col=col,
            )
        fig.update_xaxes(title_text="simulated wall-clock (min)", row=1, col=col)
    fig.update_yaxes(title_text="hypervolume (median, interquartile band)", row=1, col=1)
    fig.update_layout(template="plotly_white", width=1500, height=520, title="Search quality on the benchmark table")
    try:
        fig.write_image(str(path), width=1500, height=520)
    except Exception as exc:  # kaleido without a browser, or one that failed to start
        return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE), help="table written by nas bench build --export")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--samplers", default="random,tpe,nsga2", help=f"comma-separated, of {', '.join(SAMPLERS)}")
    parser.add_argument("--workers", type=int, default=2, help="trials at once in each replay (simulated)")
    parser.add_argument("--budget-seconds", type=float, help="simulated seconds [default: 24 full trainings on the workers]")
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1), help="replays run at once")
    parser.add_argument("--png", default=str(Path(__file__).with_name("quality.png")))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fidelity", default=str(FIDELITY_RUNS), help="calibration runs written by nas calibrate --export")
    parser.add_argument("--only", choices=("search", "fidelity", "latency"),
                        help="search or fidelity: one of the two parts [default: both]; latency: the latency comparison alone")
    args = parser.parse_args()
    if args.only == "latency":
        samplers = [s for s in SAMPLERS if s in args.samplers.split(",")]
        report = latency_report(args.table, samplers, args.seeds, args.workers, args.budget_seconds, args.processes)
        print(json.dumps(report, indent=2, default=float) if args.json else "\n".join(report["lines"]))
        return
    if args.only != "search":
        fidelity = fidelity_report(args.fidelity)
        if args.only == "fidelity":
            print(json.dumps(fidelity, indent=2, default=float) if args.json else "\n".join(fidelity["lines"]))
            return
    samplers = [s for s in SAMPLERS if s in args.samplers.split(",")]
    unknown = set(args.samplers.split(",")) - set(SAMPLERS)
    if unknown or "random" not in samplers:
        raise SystemExit(f"--samplers: choose from {', '.join(SAMPLERS)}, random included (the baseline)")

    table = Table.load(args.table)
    started = time.perf_counter()
    runs = run_all(args.table, samplers, args.seeds, args.workers, args.budget_seconds, args.processes)
    wall = time.perf_counter() - started
    budget = runs[0]["budget_seconds"]

    rows, curves = [], {}
    for sampler in samplers:
        for scheduler in SCHEDULERS:
            mine = [r for r in runs if r["sampler"] == sampler and r["scheduler"] == scheduler]
            grid = np.array([[hypervolume_at(r["trace"], t) for t in np.linspace(0, budget, CURVE_POINTS)] for r in mine])
            curves[(sampler, scheduler)] = grid
            suggestions = sum(r["complete"] + r["pruned"] + r["failed"] for r in mine)
            rows.append({
                "sampler": sampler, "scheduler": scheduler, "seeds": len(mine),
                "hypervolume": {f"{share:g}": quartiles([hypervolume_at(r["trace"], share * budget) for r in mine]) for share in CHECKPOINTS},
                "complete": quartiles([r["complete"] for r in mine]), "pruned": quartiles([r["pruned"] for r in mine]),
                "stopped": quartiles([sum(r["stopped_per_rung"].values()) for r in mine]),
                "stopped_per_rung": {rung: quartiles([r["stopped_per_rung"][rung] for r in mine]) for rung in mine[0]["stopped_per_rung"]},
                "exhausted": sum(r["table_exhausted"] for r in mine),
                "sampler_seconds_per_suggestion": sum(r["suggest_seconds"] for r in mine) / max(1, suggestions),
                "stand_in_gower": float(np.median([g for r in mine for g, _ in r["fidelity"]] or [math.nan])),
                "stand_in_macs_ratio": float(np.exp(np.median([m for r in mine for _, m in r["fidelity"]] or [math.nan]))),
            })
    comparisons = compare(runs, samplers)
    zero_cost = spearman_table(table)
    stops = front_stops(table)
    png_error = draw_png(curves, budget, samplers, Path(args.png))
    top1, macs = table.reference_point()
    report = {
        "table": args.table, "points": len(table.points), "complete_points": sum(p.complete for p in table.points),
        "recipe": table.recipe.as_dict(), "data": table.data, "workers": args.workers, "budget_seconds": budget,
        "budget_full_trainings": table.full_trainings(budget, args.workers),
        "reference_point": {"proxy_top1": top1, "macs": macs, "normalised": [REFERENCE, REFERENCE]},
        "table_front_hypervolume": table.hypervolume(table.points), "wall_seconds": wall,
        "strategies": rows, "comparisons": comparisons, "zero_cost_spearman": zero_cost,
        "front_stopped": stops, "png": None if png_error else args.png, "png_error": png_error,
    }
    if args.only is None:
        report["proxy_fidelity"] = fidelity
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return
    print_report(report, samplers)
    if args.only is None:
        print("\n" + "\n".join(fidelity["lines"]))
    print_markdown(report, samplers)


def latency_report(path: str, samplers, seeds: int, workers: int, budget: float | None, processes: int) -> dict:
    """A latency-aware search against a MACs-only one (and the search on both) at the same simulated budget, each
    scored by the hypervolume in (top-1, latency): see the module's docstring."""
    from scipy.stats import mannwhitneyu

    from nas.bench import latency_agreement
    from searchspace.latency import Device

    table = Table.load(path)
    table.check_objectives(LATENCY_AWARE)  # a table without latency is refused here, naming nas bench latency
    started = time.perf_counter()
    runs = run_all(path, samplers, seeds, workers, budget, processes, objectives=list(SEARCHES))
    wall = time.perf_counter() - started
    budget = runs[0]["budget_seconds"]
    final, at = {}, {}  # (sampler, searched objectives, scored objectives) -> final hypervolume per seed; in (top-1, latency) at a share of the budget
    for r in runs:
        for scored, trace in r["scored"].items():
            final.setdefault((r["sampler"], tuple(r["objectives"]), scored), []).append(trace[-1][1])
        for share in CHECKPOINTS:
            at.setdefault((r["sampler"], tuple(r["objectives"]), share), []).append(hypervolume_at(r["scored"]["top1,latency"], share * budget))
    rows, comparisons = [], []
    for sampler in samplers:
        for objectives in SEARCHES:
            mine = [r for r in runs if r["sampler"] == sampler and tuple(r["objectives"]) == objectives]
            rows.append({
                "sampler": sampler, "objectives": list(objectives), "seeds": len(mine),
                **{f"hypervolume_{scored.replace(',', '_')}": quartiles(final[(sampler, objectives, scored)]) for scored in ("top1,latency", "top1,macs")},
                "hypervolume_top1_latency_at": {f"{share:g}": quartiles(at[(sampler, objectives, share)]) for share in CHECKPOINTS},
                "final_top1_latency": final[(sampler, objectives, "top1,latency")],
                "complete": quartiles([r["complete"] for r in mine]), "pruned": quartiles([r["pruned"] for r in mine]),
            })
            if objectives != MACS_ONLY:
                a, b = final[(sampler, objectives, "top1,latency")], final[(sampler, MACS_ONLY, "top1,latency")]
                test = mannwhitneyu(a, b, alternative="two-sided")
                comparisons.append({
                    "sampler": sampler, "search": list(objectives), "against": list(MACS_ONLY), "scored_in": list(LATENCY_AWARE),
                    "median_ratio": float(np.median(a) / np.median(b)), "ratio_ci": ratio_interval(a, b),
                    "u": float(test.statistic), "p": float(test.pvalue), "n": (len(a), len(b)),
                })
    for row, adjusted in zip(comparisons, holm([c["p"] for c in comparisons])):
        row["p_holm"] = adjusted
    agreement = latency_agreement(table)
    top1, ms = table.reference_point(LATENCY_AWARE)
    _, macs = table.reference_point(MACS_ONLY)
    device = Device.from_dict(table.latency["device"])
    report = {
        "table": path, "points": len(table.points), "workers": workers, "budget_seconds": budget,
        "budget_full_trainings": table.full_trainings(budget, workers), "seeds": seeds, "scheduler": "pareto",
        "reference_point": {"top1,latency": {"proxy_top1": top1, "latency_ms": ms}, "top1,macs": {"proxy_top1": top1, "macs": macs}},
        "normalised_reference": REFERENCE, "table_front_hypervolume": {
            "top1,latency": table.hypervolume(table.points, LATENCY_AWARE), "top1,macs": table.hypervolume(table.points, MACS_ONLY)},
        "latency_device": table.latency["device"], "latency_protocol": table.latency["protocol"], "latency_runs": table.latency.get("runs", []),
        "macs_against_latency": {k: agreement[k] for k in ("measured", "macs_tau", "class_points", "class_macs_tau", "ms_per_gmac", "ms")},
        "strategies": rows, "comparisons": comparisons, "wall_seconds": wall, "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    report["lines"] = latency_lines(report, device)
    return report


def latency_lines(r: dict, device) -> list[str]:
    ref = r["reference_point"]
    m = r["macs_against_latency"]
    loads = "; ".join(f"load average {x['load_average_start'][0]:.1f} at the start, {x.get('load_average_end', x['load_average_start'])[0]:.1f} at the end"
                      for x in r["latency_runs"])
    lines = [
        f"latency-aware against MACs-only search on {r['table']}: {r['points']} points, latency measured on {device.describe()}, "
        f"clock {r['latency_protocol'].get('clock', 'wall')} ({loads})",
        f"MACs against the measured latency: Kendall tau {m['macs_tau']:+.3f} over the {m['measured']} points, "
        + (f"{m['class_macs_tau']:+.3f} among the {m['class_points']} of 2.4-4.8 GMACs" if m["class_points"] >= 2 else "fewer than 2 of 2.4-4.8 GMACs")
        + f"; {m['ms'][0]:.1f}-{m['ms'][2]:.1f} ms, "
        f"{m['ms_per_gmac'][0]:.1f}-{m['ms_per_gmac'][2]:.1f} ms per GMAC",
        f"{r['workers']} simulated workers, budget {r['budget_seconds'] / 60:.1f} simulated min (~{r['budget_full_trainings']} full "
        f"trainings) for every search; scheduler pareto; {r['seeds']} seeds; {sum(s['seeds'] for s in r['strategies'])} replays in "
        f"{r['wall_seconds']:.0f} s (load average {r['load_average_end'][0]:.1f} at the end)",
        f"hypervolume in (top-1, latency): normalised to the table front's box, reference point ({REFERENCE:g}, {REFERENCE:g}) = "
        f"{ref['top1,latency']['proxy_top1']:.2f}% top-1, {ref['top1,latency']['latency_ms']:.1f} ms (the table's whole front: "
        f"{r['table_front_hypervolume']['top1,latency']:.3f}); in (top-1, MACs): ({REFERENCE:g}, {REFERENCE:g}) = "
        f"{ref['top1,macs']['proxy_top1']:.2f}% top-1, {ref['top1,macs']['macs'] / 1e9:.3f} GMACs (whole front "
        f"{r['table_front_hypervolume']['top1,macs']:.3f})",
        "",
        "hypervolume, median [interquartile range] over seeds: in (top-1, latency) at a share of the budget, and at its end in "
        "(top-1, MACs):",
        f"{'sampler':8s} {'searched on':42s} " + " ".join(f"{'at ' + format(s, '.0%'):>21s}" for s in CHECKPOINTS)
        + f" {'(top-1, MACs)':>21s} {'complete':>9s} {'pruned':>7s}",
    ]
    for row in r["strategies"]:
        lines.append(
            f"{row['sampler']:8s} {SEARCHES[tuple(row['objectives'])]:42s} "
            + " ".join(f"{_q(row['hypervolume_top1_latency_at'][format(s, 'g')]):>21s}" for s in CHECKPOINTS)
            + f" {_q(row['hypervolume_top1_macs']):>21s} {row['complete'][1]:9.1f} {row['pruned'][1]:7.1f}"
        )
    lines += ["", "hypervolume in (top-1, latency) against the MACs-only search with the same sampler (two-sided Mann-Whitney U, "
              f"Holm-corrected over these {len(r['comparisons'])} comparisons):"]
    for c in r["comparisons"]:
        lines.append(
            f"  {c['sampler']:8s} {SEARCHES[tuple(c['search'])]:42s}: {c['median_ratio']:.2f}x [{c['ratio_ci'][0]:.2f}, "
            f"{c['ratio_ci'][1]:.2f}], p {c['p']:.3g} (corrected {c['p_holm']:.3g})"
        )
    rows = {(row["sampler"], tuple(row["objectives"])): row for row in r["strategies"]}
    ratios = {(c["sampler"], tuple(c["search"])): c for c in r["comparisons"]}
    lines += ["", "--- Markdown for README (final hypervolume in (top-1, latency); ratio to MACs-only [95% interval], p, Holm) ---",
              "| sampler | MACs-only | latency-aware | vs MACs-only | MACs and latency | vs MACs-only |", "|---|---|---|---|---|---|"]
    for sampler in dict.fromkeys(row["sampler"] for row in r["strategies"]):
        cells = [NAMES[sampler], _q(rows[(sampler, MACS_ONLY)]["hypervolume_top1_latency"])]
        for objectives in (LATENCY_AWARE, BOTH):
            c = ratios[(sampler, objectives)]
            cells += [_q(rows[(sampler, objectives)]["hypervolume_top1_latency"]),
                      f"{c['median_ratio']:.2f}x [{c['ratio_ci'][0]:.2f}, {c['ratio_ci'][1]:.2f}], p {c['p']:.2g} ({c['p_holm']:.2g})"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def fidelity_report(path: str) -> dict:
    """Proxy fidelity: each proxy recipe's calibration figures against the same reference, recomputed from
    the runs `nas calibrate --export` wrote (the panel's scores per recipe and seed; nothing is trained)."""
    from dashboards.calibration import recipes_compared

    frame = pd.read_csv(path)
    rows = recipes_compared(frame)
    reference = frame[frame.role == "reference"]
    lines = [
        f"proxy fidelity on {path}: {frame.point.nunique()} panel points; reference: {reference.recipe_text.iloc[0]}, "
        f"{reference.seconds.mean():.0f} s per trial",
        "Kendall tau with 95% bootstrap intervals over the panel; noise: one score's standard deviation between seeds",
        f"{'proxy recipe':60s} {'s/trial':>7s} {'seed tau':>9s} {'noise':>6s} {'tau vs reference':>22s} {'SoTL vs ref':>12s} "
        f"{'vs papers':>9s}",
    ]
    for row in rows:
        f = row["figures"]
        ref = f["against_reference"]
        ci = ref["proxy_top1"]["tau_ci"]
        lines.append(
            f"{row['recipe_text']:60s} {f['cost']['proxy']['seconds_per_trial']:7.1f} {f['seed_to_seed']['tau']:+9.2f} "
            f"{f['noise']['pooled_std']:6.2f} {ref['proxy_top1']['tau']:+6.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] "
            f"{ref['proxy_sotl']['tau'] if ref['proxy_sotl'] else float('nan'):+12.2f} {f['against_published']['all']['proxy']:+9.2f}"
        )
    first = rows[0]["figures"]
    lines.append(
        f"baselines: MACs alone vs reference tau {first['against_reference']['macs_only']['tau']:+.2f}; vs papers "
        f"{first['against_published']['all']['macs_only']:+.2f}; the reference itself vs papers "
        f"{first['against_published']['all'].get('reference', float('nan')):+.2f}"
    )
    return {"runs": path, "recipes": rows, "lines": lines}


def front_stops(table: Table, orders: int = 200, seed: int = 0) -> dict:
    """The share of the table's front (fully trained top-1 vs MACs) that each early-stopping scheduler would
    stop: the table's points arrive one after another in a random order (`orders` orders), each reporting its
    learning curve to the scheduler until told to stop, as in a search of one worker. Both schedulers share
    their rungs; they differ in how they rank (nas.scheduler)."""
    from ray.tune.schedulers import TrialScheduler

    from nas.ray_internals import stand_in_trial
    from nas.scheduler import make_scheduler
    from trials import record

    points = [p for p in table.points if p.complete]
    front = {p.id for p in table.front()}
    rng = np.random.default_rng(seed)
    shares: dict[str, list[float]] = {"pareto": [], "asha": []}
    for _ in range(orders):
        order = rng.permutation(len(points))
        for name, share in shares.items():
            scheduler, stopped = make_scheduler(name, table.recipe.epochs), 0
            for i in order:
                p, trial = points[i], stand_in_trial()
                scheduler.on_trial_add(None, trial)
                for progress, top1 in zip(p.curve["progress"], p.curve["proxy_top1"], strict=True):
                    result = {"progress": progress, "epoch": int(progress), record.PROXY_TOP1: top1, record.MACS: p.macs}
                    if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP and progress < table.recipe.epochs:
                        stopped += p.id in front
                        break
                scheduler.on_trial_complete(None, trial, result)
            share.append(stopped / len(front))
    return {"front_points": len(front), "orders": orders, **{name: quartiles(v) for name, v in shares.items()},
            **{f"{name}_mean": float(np.mean(v)) for name, v in shares.items()}}


def _q(q, digits=3) -> str:
    return f"{q[1]:.{digits}f} [{q[0]:.{digits}f}-{q[2]:.{digits}f}]"


def print_report(r: dict, samplers) -> None:
    ref = r["reference_point"]
    print(f"search quality on {r['table']}: {r['points']} points ({r['complete_points']} complete), data {r['data']}, "
          f"{r['recipe']['epochs']} epochs on {r['recipe']['subset']} images")
    print(f"{r['workers']} simulated workers, budget {r['budget_seconds'] / 60:.1f} simulated min (~{r['budget_full_trainings']} full trainings); "
          f"{len(r['strategies']) * r['strategies'][0]['seeds']} replays in {r['wall_seconds']:.0f} s")
    print(f"hypervolume: objectives normalised to the table front's box (0 = its best top-1 / least MACs, 1 = its worst / most); "
          f"fixed reference point ({REFERENCE:g}, {REFERENCE:g}) = {ref['proxy_top1']:.2f}% top-1, {ref['macs'] / 1e9:.3f} GMACs; "
          f"the table's whole front scores {r['table_front_hypervolume']:.3f}")
    print("\nhypervolume, median [interquartile range] over seeds, at a share of the budget:")
    header = f"{'sampler':8s} {'scheduler':9s} " + " ".join(f"{'at ' + format(s, '.0%'):>21s}" for s in CHECKPOINTS)
    print(header + f" {'complete':>9s} {'stopped (at rungs)':>20s} {'pruned':>7s} {'s/suggest':>9s} {'stand-in':>16s}")
    for row in r["strategies"]:
        hv = " ".join(f"{_q(row['hypervolume'][format(s, 'g')]):>21s}" for s in CHECKPOINTS)
        print(f"{row['sampler']:8s} {row['scheduler']:9s} {hv} {row['complete'][1]:9.1f} {_stops(row):>20s} {row['pruned'][1]:7.1f} "
              f"{row['sampler_seconds_per_suggestion']:9.2f} {'Gower ' + format(row['stand_in_gower'], '.2f') + ', MACs x' + format(row['stand_in_macs_ratio'], '.2f'):>16s}"
              + (f"  (table exhausted in {row['exhausted']} seeds)" if row["exhausted"] else ""))
    print("(trials per replay, medians: complete; stopped by the scheduler, in all and at each rung in epochs; pruned: stopped or cut by the budget)")
    print("\nfinal hypervolume against random search, and pareto against asha (two-sided Mann-Whitney U, Holm-corrected over these comparisons):")
    for c in r["comparisons"]:
        print(f"  {c['strategy']:15s} vs {c['against']:13s}: median {c['median_difference']:+.3f}, "
              f"ratio {c['median_ratio']:.2f}x [{c['ratio_ci'][0]:.2f}, {c['ratio_ci'][1]:.2f}], p {c['p']:.3f} "
              f"(corrected {c['p_holm']:.3f}): {c['verdict']}")
    print("\nSpearman's rho with the table's trained top-1 (complete points; 95% interval, Fisher z):")
    for z in r["zero_cost_spearman"]:
        print(f"  {z['score']:10s} rho {z['rho']:+.2f} [{z['low']:+.2f}, {z['high']:+.2f}]  n {z['n']}, p {z['p']:.3g}")
    f = r["front_stopped"]
    print(f"\nshare of the table's {f['front_points']} front points an early-stopping scheduler stops ({f['orders']} random arrival "
          f"orders, one at a time): MO-ASHA (pareto) {f['pareto_mean']:.0%} (median {f['pareto'][1]:.0%}), "
          f"ASHA on top-1 alone {f['asha_mean']:.0%} (median {f['asha'][1]:.0%})")
    if "gp" not in samplers:
        print("\nGP not in --samplers (about 10 s per suggestion on this space): add it for the full comparison")
    print(f"\ncurves: {r['png']}" if r["png"] else f"\nno PNG: {r['png_error']}")


NAMES = {"random": "random", "tpe": "TPE", "nsga2": "NSGA-II", "gp": "GP"}


def _stops(row: dict) -> str:
    rungs = row["stopped_per_rung"]
    return f"{row['stopped'][1]:.1f}" + (f" ({', '.join(f'{q[1]:.1f} at {rung}' for rung, q in rungs.items())})" if rungs else "")


def print_markdown(r: dict, samplers) -> None:
    """The README's "Search quality" figures, as Markdown to paste."""
    rows = {(row["sampler"], row["scheduler"]): row for row in r["strategies"]}
    comparisons = {(c["strategy"], c["against"]): c for c in r["comparisons"]}
    print("\n--- Markdown for README \"Search quality\" ---")
    print("| sampler | pareto (default) | asha | none |\n|---|---|---|---|")
    for sampler in samplers:
        cells = [_q(rows[(sampler, scheduler)]["hypervolume"]["1"]) for scheduler in SCHEDULERS]
        if sampler == "tpe":
            print(f"| **{NAMES[sampler]} (default)** | **{cells[0]}** | {cells[1]} | {cells[2]} |")
        else:
            print(f"| {NAMES[sampler]} | {' | '.join(cells)} |")
    print("\nTrials per replay (median; stopped: by the scheduler, at each rung in epochs):")
    for scheduler in SCHEDULERS:
        print(f"- {scheduler}: " + "; ".join(
            f"{NAMES[s]} {rows[(s, scheduler)]['complete'][1]:.1f} completed, {_stops(rows[(s, scheduler)])} stopped" for s in samplers))
    for key in (("tpe+pareto", "random+none"), ("tpe+pareto", "random+pareto"), ("tpe+asha", "random+none"), ("tpe+pareto", "tpe+asha"),
                ("random+pareto", "random+asha"), ("nsga2+pareto", "nsga2+asha")):
        c = comparisons.get(key)
        if c:
            print(f"- {key[0]} vs {key[1]}: {c['median_ratio']:.2f}x [{c['ratio_ci'][0]:.2f}, {c['ratio_ci'][1]:.2f}], "
                  f"p {c['p']:.3g}, Holm-corrected {c['p_holm']:.3g} over {len(r['comparisons'])} comparisons: {c['verdict']}")
    f = r["front_stopped"]
    print(f"- the table's {f['front_points']} front points stopped over {f['orders']} random arrival orders: "
          f"MO-ASHA {f['pareto_mean']:.0%}, ASHA {f['asha_mean']:.0%}")


if __name__ == "__main__":
    main()
