"""How fast each sampler learns the MACs budget (and a latency limit): draws that break it per trained trial.

The searcher (nas.searcher.StudySearcher) is driven without Ray or training: every suggested point gets a
synthetic proxy top-1 (a smooth function of its MACs plus seeded noise; what matters here is the constraint, not
the scores). After the first WARMUP trials, the draws over the budget per trained trial are counted, for each
sampler and several seeds. Goal (issue 8): <= 0.5 at --budget 1G on unified.yaml. With --max-latency MS and
--latency-table FILE (a `nas latency build` file), the draws over the latency limit too: the same mechanism,
an Optuna constraint on every draw (trials.goals).

    python benchmarks/budget.py [--budget 1G] [--trials 40] [--seeds 3] [--samplers tpe nsga2 gp random] [--json]
    python benchmarks/budget.py --budget 4.5G --max-latency 60 --latency-table lat-here.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time

import optuna

from nas.searcher import StudySearcher
from nas.study import make_sampler
from searchspace import ArchSpec, count, load_space, parse_macs
from trials import ProxyRecipe
from trials import record
from trials.goals import Goals

WARMUP = 20


def synthetic_top1(spec, rng: random.Random) -> float:
    return 40 + 8 * math.log10(count(spec).macs / 1e8) + rng.gauss(0, 2)


def run(sampler: str, budget: int, trials: int, seed: int, max_latency: float | None = None, latency=None) -> dict:
    goals = Goals.of(budget, max_latency_ms=max_latency)
    study = optuna.create_study(directions=goals.directions)
    searcher = StudySearcher(
        study, load_space("unified"), budget, ProxyRecipe(), trials, sampler=make_sampler(sampler, seed, trials), goals=goals, latency=latency,
    )
    rng = random.Random(seed)
    over_at_warmup = latency_at_warmup = 0
    start = time.perf_counter()
    for i in range(trials):
        if i == WARMUP:
            over_at_warmup, latency_at_warmup = searcher.tally.over_budget, searcher.tally.over_latency
        config = searcher.suggest(f"t{i}")
        if not isinstance(config, dict):
            break
        spec = ArchSpec.model_validate(config["spec"])
        searcher.on_trial_complete(f"t{i}", {"epoch": 2, "proxy_top1": synthetic_top1(spec, rng), "proxy_loss": 1.0})
    trained_after = max(1, searcher.tally.complete - WARMUP)
    return {
        "sampler": sampler, "seed": seed, "trained": searcher.tally.complete,
        "over_budget_total": searcher.tally.over_budget,
        "over_budget_per_trained_after_warmup": (searcher.tally.over_budget - over_at_warmup) / trained_after,
        "over_latency_total": searcher.tally.over_latency,
        "over_latency_per_trained_after_warmup": (searcher.tally.over_latency - latency_at_warmup) / trained_after,
        "repeats": searcher.tally.repeats, "stored_trials": len(study.trials),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="1G")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "gp", "random"])
    parser.add_argument("--max-latency", type=float, help="A latency limit (ms) learned beside the budget (needs --latency-table).")
    parser.add_argument("--latency-table", help="The predictor file the latencies come from (nas latency build).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    budget = parse_macs(args.budget)
    if (args.max_latency is None) != (args.latency_table is None):
        parser.error("--max-latency and --latency-table go together")
    latency = None
    if args.latency_table:
        from nas.latency_source import TableLatency

        latency = TableLatency(args.latency_table)
    rows = [run(s, budget, args.trials, seed, args.max_latency, latency) for s in args.samplers for seed in range(args.seeds)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    limit = f" and latency limit {args.max_latency:g} ms ({args.latency_table})" if latency else ""
    print(f"draws that break a constraint per trained trial after the first {WARMUP} trials, budget {args.budget} MACs{limit}, "
          f"{args.trials} trials, {args.seeds} seeds (median [min, max]); goal <= 0.5")
    kinds = [("over_budget", "over budget")] + ([("over_latency", "over latency")] if latency else [])
    print(f"{'sampler':8s} " + " ".join(f"{label + ' per trained':>24s} {'total':>6s}" for _, label in kinds) + f" {'stored/trained':>15s} {'s/run':>7s}")
    for sampler in args.samplers:
        mine = [r for r in rows if r["sampler"] == sampler]
        cells = []
        for key, _ in kinds:
            per = [r[f"{key}_per_trained_after_warmup"] for r in mine]
            cells.append(f"{statistics.median(per):10.2f} [{min(per):5.2f}, {max(per):5.2f}] {statistics.median(r[f'{key}_total'] for r in mine):6.0f}")
        print(f"{sampler:8s} " + " ".join(cells)
              + f" {statistics.median(r['stored_trials'] for r in mine):7.0f}/{statistics.median(r['trained'] for r in mine):<7.0f} "
              f"{statistics.median(r['seconds'] for r in mine):7.1f}")


if __name__ == "__main__":
    main()
