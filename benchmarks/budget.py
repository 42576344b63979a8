"""How fast each sampler learns the MACs budget: draws over the budget per trained trial.

The searcher (nas.searcher.StudySearcher) is driven without Ray or training: every suggested point gets a
synthetic proxy top-1 (a smooth function of its MACs plus seeded noise; what matters here is the budget, not
the scores). After the first WARMUP trials, the draws over the budget per trained trial are counted, for each
sampler and several seeds. Goal (issue 8): <= 0.5 at --budget 1G on unified.yaml.

    python benchmarks/budget.py [--budget 1G] [--trials 40] [--seeds 3] [--samplers tpe nsga2 gp random] [--json]
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

WARMUP = 20


def synthetic_top1(spec, rng: random.Random) -> float:
    return 40 + 8 * math.log10(count(spec).macs / 1e8) + rng.gauss(0, 2)


def run(sampler: str, budget: int, trials: int, seed: int) -> dict:
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    searcher = StudySearcher(study, load_space("unified"), budget, ProxyRecipe(), trials, sampler=make_sampler(sampler, seed, trials))
    rng = random.Random(seed)
    over_at_warmup = 0
    start = time.perf_counter()
    for i in range(trials):
        if i == WARMUP:
            over_at_warmup = searcher.tally.over_budget
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
        "repeats": searcher.tally.repeats, "stored_trials": len(study.trials),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="1G")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "gp", "random"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    budget = parse_macs(args.budget)
    rows = [run(s, budget, args.trials, seed) for s in args.samplers for seed in range(args.seeds)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"over-budget draws per trained trial after the first {WARMUP} trials, budget {args.budget} MACs, "
          f"{args.trials} trials, {args.seeds} seeds (median [min, max]); goal <= 0.5")
    print(f"{'sampler':8s} {'per trained':>22s} {'total over':>11s} {'stored/trained':>15s} {'s/run':>7s}")
    for sampler in args.samplers:
        mine = [r for r in rows if r["sampler"] == sampler]
        per = [r["over_budget_per_trained_after_warmup"] for r in mine]
        print(f"{sampler:8s} {statistics.median(per):8.2f} [{min(per):5.2f}, {max(per):5.2f}] "
              f"{statistics.median(r['over_budget_total'] for r in mine):11.0f} "
              f"{statistics.median(r['stored_trials'] for r in mine):7.0f}/{statistics.median(r['trained'] for r in mine):<7.0f} "
              f"{statistics.median(r['seconds'] for r in mine):7.1f}")


if __name__ == "__main__":
    main()
