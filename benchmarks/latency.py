"""Latency benchmark: how repeatable a latency measurement is, and how well MACs rank latency.

A panel of 20 networks (the 12 presets within 4.8G and 8 points of the unified space drawn within 4.5G, seeded,
convolution-like, attention and hybrid alike) is measured twice, pass after pass, by `nas latency measure`'s
protocol (batch 1, full size). Printed, with the load average at the start and end of each pass:
- repeatability: Kendall tau between the two passes (goal >= 0.95) and the median |difference| of a network's
  two medians (goal <= 3% on a quiet machine). It is the ceiling of any predictor's rank agreement with one
  measurement: a predictor cannot be seen to rank better than the measurement repeats itself;
- MACs against latency: Kendall tau over the panel and within the 2.4-4.8 GMACs class, ms per GMAC;
- with --table FILE (a `nas latency build` file of this device): its held-out figures beside that ceiling, and
  its predictions of the panel's points it did not measure against this run.

    python benchmarks/latency.py [--threads N] [--clock wall|cpu] [--points 8] [--seed 0] [--table lat.json] [--json]
    python benchmarks/latency.py --names u_pvt_micro,u_dwconv_micro,u_swin_micro    # a quick look at three networks
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLASS = (2.4e9, 4.8e9)  # the class of networks of similar MACs where MACs rank latency worst


def panel(points: int, seed: int):
    from nas.calibrate import default_panel
    from searchspace import count, parse_macs, preset, preset_names

    presets = [preset(n) for n in preset_names() if count(preset(n)).macs <= parse_macs("4.8G")]
    return presets + default_panel(None, parse_macs("4.5G"), points, seed, presets=False)


def one_pass(specs, protocol) -> dict:
    from searchspace.latency import measure_latency

    load_start = os.getloadavg()[0]
    results = {}
    for spec in specs:
        r = measure_latency(spec, protocol)
        results[spec.id] = r
        print(f"  {spec.label:16s} {r.ms:8.2f} ms  IQR {r.latency.iqr_ms:6.2f}  ({r.latency.runs} runs)", flush=True)
    return {"results": results, "load": (round(load_start, 2), round(os.getloadavg()[0], 2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-runs", type=int, default=15)
    parser.add_argument("--table", help="a predictor file of this device (nas latency build)")
    parser.add_argument("--names", help="measure these presets or spec files (comma-separated) instead of the panel")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    import numpy as np

    from searchspace import count, load_space, parse_macs
    from searchspace.latency import Device, Protocol
    from searchspace.latency_table import LatencyTable, kendall_tau, score

    protocol = Protocol(throughput_batch=0, threads=args.threads, clock=args.clock, min_runs=args.min_runs)
    if args.names:
        from searchspace import load_spec

        specs = [load_spec(n) for n in args.names.split(",")]
    else:
        specs = panel(args.points, args.seed)
    print(f"device: {Device.here(protocol).describe()}; clock {args.clock}; {len(specs)} networks")
    started = time.perf_counter()
    passes = []
    for i in (1, 2):
        print(f"pass {i}:", flush=True)
        passes.append(one_pass(specs, protocol))
    seconds = time.perf_counter() - started
    ids = [s.id for s in specs]
    first = np.array([passes[0]["results"][i].ms for i in ids])
    second = np.array([passes[1]["results"][i].ms for i in ids])
    macs = np.array([passes[0]["results"][i].macs for i in ids])
    diff = np.abs(second / first - 1)
    spread = np.array([passes[0]["results"][i].latency.relative_spread for i in ids])
    in_class = (macs >= CLASS[0]) & (macs <= CLASS[1])
    mean = (first + second) / 2
    per_gmac = mean / (macs / 1e9)
    figures = {
        "networks": len(ids),
        "protocol": protocol.to_dict(),
        "device": Device.here(protocol).to_dict(),
        "load_average_per_pass": [p["load"] for p in passes],
        "seconds": round(seconds, 1),
        "repeatability_tau": round(kendall_tau(first, second), 4),
        "repeatability_tau_in_class": round(kendall_tau(first[in_class], second[in_class]), 4),
        "median_abs_difference": round(float(np.median(diff)), 4),
        "max_abs_difference": round(float(diff.max()), 4),
        "median_relative_iqr": round(float(np.median(spread)), 4),
        "macs_tau": round(kendall_tau(macs, mean), 4),
        "macs_tau_in_class": round(kendall_tau(macs[in_class], mean[in_class]), 4),
        "networks_in_class": int(in_class.sum()),
        "ms_per_gmac": {"min": round(float(per_gmac.min()), 1), "max": round(float(per_gmac.max()), 1)},
        "panel": [
            {"name": s.label, "macs": int(m), "ms": [round(float(a), 3), round(float(b), 3)]}
            for s, m, a, b in zip(specs, macs, first, second)
        ],
    }

    print(f"\n{'network':16s} {'GMACs':>6s} {'pass 1':>9s} {'pass 2':>9s} {'|diff|':>7s} {'ms/GMAC':>8s}")
    for s, m, a, b, d, g in zip(specs, macs, first, second, diff, per_gmac):
        print(f"{s.label:16s} {m / 1e9:6.2f} {a:9.2f} {b:9.2f} {d:7.1%} {g:8.1f}")
    loads = ", ".join(f"pass {i + 1} {a:.1f} -> {b:.1f}" for i, (a, b) in enumerate(figures["load_average_per_pass"]))
    print(f"\nload average (1 min): {loads}; {seconds / 60:.1f} min for both passes")
    print(
        f"repeatability: Kendall tau {figures['repeatability_tau']:+.3f} between the passes (goal >= 0.95; "
        f"{figures['repeatability_tau_in_class']:+.3f} within {CLASS[0] / 1e9:g}-{CLASS[1] / 1e9:g}G), median |difference| "
        f"{figures['median_abs_difference']:.1%} (goal <= 3%), largest {figures['max_abs_difference']:.1%}; "
        f"median IQR / median of one figure {figures['median_relative_iqr']:.1%}"
    )
    print(
        f"MACs vs latency: Kendall tau {figures['macs_tau']:+.3f} over the panel, {figures['macs_tau_in_class']:+.3f} "
        f"among the {figures['networks_in_class']} networks of {CLASS[0] / 1e9:g}-{CLASS[1] / 1e9:g} GMACs; "
        f"ms per GMAC {figures['ms_per_gmac']['min']}-{figures['ms_per_gmac']['max']}"
    )
    if args.table:
        table = LatencyTable.load(args.table)
        e = table.evaluation
        print(
            f"predictor {args.table} ({table.predictor}), held out when built: "
            + "; ".join(f"{p} tau {e[p]['tau']:+.3f}, {e[p]['within_10pct']:.0%} within 10%" for p in ("lut", "model"))
            + f"; this run's repeatability tau {figures['repeatability_tau']:+.3f} is the ceiling a predictor can be seen to reach"
        )
        unseen = [i for i, s in enumerate(specs) if s.id not in table.points]
        if len(unseen) >= 3:  # answered as the search would be: the LUT where it holds every part, else the model
            predicted = np.array([table.predict(specs[i]) for i in unseen])
            sources = [table.source(specs[i]) for i in unseen]
            figures["table_on_unseen"] = {**score(predicted, mean[unseen]), "sources": {s: sources.count(s) for s in set(sources)}}
            f = figures["table_on_unseen"]
            print(f"its predictions of the {f['n']} panel points it did not measure ({', '.join(f'{n} by {s}' for s, n in f['sources'].items())}): "
                  f"tau {f['tau']:+.3f}, {f['within_10pct']:.0%} within 10% of this run (mean of the passes)")
        draws = load_space(None).sample_within(parse_macs("4.5G"), 200, args.seed + 1)
        for predictor in ("model", "lut"):
            t0 = time.perf_counter()
            for spec in draws:
                table.predict_with(predictor, spec)
            figures[f"{predictor}_ms_per_prediction"] = round((time.perf_counter() - t0) / len(draws) * 1e3, 3)
        t0 = time.perf_counter()
        for spec in draws:
            count(spec)
        figures["count_ms_per_spec"] = round((time.perf_counter() - t0) / len(draws) * 1e3, 3)
        print(
            f"prediction time over {len(draws)} draws: model {figures['model_ms_per_prediction']:.2f} ms, LUT "
            f"{figures['lut_ms_per_prediction']:.2f} ms a point (count(spec), the MACs every draw already pays: "
            f"{figures['count_ms_per_spec']:.2f} ms); the LUT holds every part of {table.covers(draws):.0%} of them"
        )
        if not Device.from_dict(table.device).same_as(Device.here(protocol)):
            print("note: the table was built on another device or protocol than this run")
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
