"""How wrong a latency is when it is timed beside a proxy training on the same cores: why `nas search --latency`
measures only while none of its trials trains (nas.latency_source, nas.searcher).

A few presets are timed by the search's protocol (searchspace.latency: batch 1, full size, the median of at least
15 runs; torch's threads, the wall clock, as the search measures) alone, then while --trainers proxy trainings run
on the same machine (as a search's Ray trials do: one thread each, the default recipe training --trainer-spec,
started before the timing and running throughout), alternating which comes first over --rounds rounds, so that
a drift of the machine's own load falls on both. Printed: each preset's medians alone and beside (with their
interquartile ranges), the ratio beside / alone in each round, and over every preset and round the median ratio
with its interquartile range and extremes; the load average at the start and the end.

    python benchmarks/latency_beside_training.py [--names u_pvt_micro,u_swin_micro,dwnet_t] [--rounds 3]
        [--trainers N] [--threads N] [--clock wall|cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAMES = "u_pvt_micro,u_dwconv_micro,u_swin_micro,dwnet_t"


def _train_forever(spec_name: str, threads: int, started, stop) -> None:
    """A proxy training of the default recipe (one seed, many epochs) until `stop` is set, on `threads` threads."""
    import torch

    from searchspace import preset
    from trials import ProxyRecipe, load_proxy_data, train_proxy

    torch.set_num_threads(threads)
    recipe = ProxyRecipe(epochs=10_000)
    data = load_proxy_data(None, recipe.resolution, recipe.subset, recipe.val_size, recipe.seed)
    started.set()
    for _ in train_proxy(preset(spec_name), data, recipe, "cpu"):
        if stop.is_set():
            return


class Trainers:
    """`n` proxy trainings in processes of their own, running from `__enter__` (once each has started) to `__exit__`."""

    def __init__(self, n: int, spec: str, threads: int, warmup: float):
        self.n, self.spec, self.threads, self.warmup = n, spec, threads, warmup

    def __enter__(self):
        context = mp.get_context("spawn")
        self.stop = context.Event()
        starts = [context.Event() for _ in range(self.n)]
        self.processes = [context.Process(target=_train_forever, args=(self.spec, self.threads, s, self.stop), daemon=True) for s in starts]
        for p in self.processes:
            p.start()
        for s in starts:
            s.wait(timeout=300)
        time.sleep(self.warmup)  # past the data's loading and the first steps: training at full speed
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for p in self.processes:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()


def time_all(specs, protocol) -> dict[str, tuple[float, float]]:
    from searchspace.latency import measure_latency

    out = {}
    for spec in specs:
        result = measure_latency(spec, protocol)
        out[spec.name] = (result.ms, result.latency.iqr_ms)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default=NAMES, help="Presets to time (comma-separated).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trainers", type=int, default=os.cpu_count() or 1, help="Proxy trainings beside the timing.  [default: one per core]")
    parser.add_argument("--trainer-spec", default="swin_t", help="The preset the trainings train.")
    parser.add_argument("--trainer-threads", type=int, default=1, help="Threads of each training (a search's --cpus-per-trial).")
    parser.add_argument("--threads", type=int, default=None, help="Threads of the timing.  [default: torch's, one per core, as the search]")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    parser.add_argument("--warmup", type=float, default=5.0, help="Seconds the trainings run before a timing starts.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from searchspace import preset
    from searchspace.latency import Device, Protocol

    protocol = Protocol(throughput_batch=0, threads=args.threads, clock=args.clock)
    specs = [preset(n) for n in args.names.split(",")]
    load_start = os.getloadavg()
    rounds = []
    for r in range(args.rounds):
        order = ("alone", "beside") if r % 2 == 0 else ("beside", "alone")
        timed = {}
        for condition in order:
            if condition == "alone":
                timed["alone"] = time_all(specs, protocol)
            else:
                with Trainers(args.trainers, args.trainer_spec, args.trainer_threads, args.warmup):
                    timed["beside"] = time_all(specs, protocol)
        rounds.append(timed)
        ratios = ", ".join(f"{n} {timed['beside'][n][0] / timed['alone'][n][0]:.2f}x" for n in timed["alone"])
        print(f"round {r + 1}/{args.rounds} ({' then '.join(order)}): {ratios}", file=sys.stderr)
    load_end = os.getloadavg()

    ratios = {s.name: [t["beside"][s.name][0] / t["alone"][s.name][0] for t in rounds] for s in specs}
    every = [x for xs in ratios.values() for x in xs]
    q1, median, q3 = np.percentile(every, [25, 50, 75])
    device = Device.here(protocol).describe()
    if args.json:
        print(json.dumps({
            "protocol": protocol.to_dict(), "device": device, "trainers": args.trainers, "trainer_spec": args.trainer_spec,
            "load_average_start": load_start, "load_average_end": load_end,
            "rounds": rounds, "ratios": ratios,
            "ratio": {"median": median, "q1": q1, "q3": q3, "min": min(every), "max": max(every)},
        }, indent=2))
        return
    print(f"latency at batch 1 alone vs beside {args.trainers} proxy training(s) of {args.trainer_spec} "
          f"({args.trainer_threads} thread each) on the same machine; {args.rounds} rounds; clock {args.clock}")
    print(f"{'preset':16s} {'alone ms (IQR)':>18s} {'beside ms (IQR)':>18s}  ratio per round")
    for s in specs:
        alone = statistics.median(t["alone"][s.name][0] for t in rounds)
        beside = statistics.median(t["beside"][s.name][0] for t in rounds)
        iqr_a = statistics.median(t["alone"][s.name][1] for t in rounds)
        iqr_b = statistics.median(t["beside"][s.name][1] for t in rounds)
        print(f"{s.name:16s} {alone:9.1f} ({iqr_a:5.1f}) {beside:9.1f} ({iqr_b:5.1f})  "
              + " ".join(f"{x:.2f}x" for x in ratios[s.name]))
    print(f"beside / alone over {len(every)} timings: median {median:.2f}x, interquartile range {q1:.2f}-{q3:.2f}x, "
          f"min {min(every):.2f}x, max {max(every):.2f}x")
    print(f"device: {device}; load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end "
          f"(1 minute; the trainings add to it)")


if __name__ == "__main__":
    main()
