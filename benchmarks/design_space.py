"""Design-space benchmark: cost-counting speed, and each STM kernel against a plain reference.

Prints figures measured in this run, with ratios against references measured in the same run:
- cost counting: median ms per sampled point of the unified space at 224 (goal <= 100 ms);
- at stage-1 shapes (default batch 8, C=96, 56x56): forward+backward time and peak memory of our
  operator vs a reference: static sliding vs conv2d(groups=C) (goal <= 1.1x time), window
  attention vs timm's Swin block attention (<= 1.2x), dynamic sliding vs a naive unfold
  (faster, and <= 1/4 of its peak memory).

Peak memory is the rise of the process's peak RSS over one forward+backward, each case in its own
fresh subprocess (CPU; on CUDA, torch.cuda.max_memory_allocated).

    python benchmarks/design_space.py [--batch 8] [--dim 96] [--size 56] [--reps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time


def case_inputs(name: str, batch: int, dim: int, size: int, device: str):
    import torch

    torch.manual_seed(0)
    nhwc = torch.randn(batch, size, size, dim, device=device, requires_grad=True)
    if name in ("static_ours", "static_ref"):
        from searchspace.mixer import TokenMixer
        from searchspace.spec import MixerSpec

        if name == "static_ours":
            spec = MixerSpec(connectivity="sliding", dynamic="static", kernel=7, heads=dim)
            op = TokenMixer(spec, dim, (size, size), value_proj=False, out_dim=None).to(device)
            return op, nhwc
        op = torch.nn.Conv2d(dim, dim, 7, padding=3, groups=dim).to(device)
        return op, torch.randn(batch, dim, size, size, device=device, requires_grad=True)
    if name in ("window_ours", "window_ref"):
        heads = max(1, dim // 32)
        if name == "window_ours":
            from searchspace.mixer import TokenMixer
            from searchspace.spec import MixerSpec

            spec = MixerSpec(connectivity="window", dynamic="attention", kernel=7, shift=True, heads=heads)
            return TokenMixer(spec, dim, (size, size), shifted=True).to(device), nhwc
        from timm.models.swin_transformer import SwinTransformerBlock

        from searchspace.timm_internals import swin_window_attention

        block = SwinTransformerBlock(dim, (size, size), num_heads=heads, window_size=7, shift_size=3).to(device)
        return swin_window_attention(block), nhwc
    if name in ("dynamic_ours", "dynamic_ref"):
        groups = max(1, dim // 32)
        weights = torch.randn(batch, groups, 49, size, size, device=device, requires_grad=True)
        value = torch.randn(batch, dim, size, size, device=device, requires_grad=True)
        if name == "dynamic_ours":
            from searchspace.kernels import sliding_aggregate

            return (lambda v, w=weights: sliding_aggregate(v, w, 7)), value

        def naive(v, w=weights):
            b, c, h, wd = v.shape
            cols = torch.nn.functional.unfold(v, 7, padding=3).view(b, groups, c // groups, 49, h, wd)
            return (cols * w.unsqueeze(2)).sum(3).view(b, c, h, wd)

        return naive, value
    raise ValueError(name)


def run_case(name: str, batch: int, dim: int, size: int, reps: int, device: str) -> dict:
    """Median forward+backward seconds and peak-memory rise of one case (run in a fresh process)."""
    import resource

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    op, x = case_inputs(name, batch, dim, size, device)

    def step():
        y = op(x)
        y.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mb()
    step()  # the first step is the memory measurement (and the warm-up)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak_mb": peak}


def measure(name, args) -> dict:
    cmd = [sys.executable, __file__, "--case", name, *sys.argv[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cost_counting(n: int) -> dict:
    from searchspace import count, load_space

    space = load_space("unified")
    rng = random.Random(0)
    specs = [space.sample(rng) for _ in range(n)]
    times = []
    for spec in specs:
        start = time.perf_counter()
        count(spec)
        times.append((time.perf_counter() - start) * 1e3)
    sample_times = []
    for _ in range(n):
        start = time.perf_counter()
        count(space.sample(rng))
        sample_times.append((time.perf_counter() - start) * 1e3)
    return {"count_ms": statistics.median(times), "sample_and_count_ms": statistics.median(sample_times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--points", type=int, default=200, help="sampled points for the cost-counting figure")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.batch, args.dim, args.size, args.reps, args.device)))
        return

    import torch

    report = {"shape": f"batch {args.batch}, C={args.dim}, {args.size}x{args.size}", "device": args.device,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    report["cost"] = cost_counting(args.points)
    goals = {"static": ("time", 1.1), "window": ("time", 1.2), "dynamic": ("time+memory", 1.0)}
    rows = []
    for family in ("static", "window", "dynamic"):
        ours, ref = measure(f"{family}_ours", args), measure(f"{family}_ref", args)
        time_ratio = ours["seconds"] / ref["seconds"]
        memory_ratio = ours["peak_mb"] / max(ref["peak_mb"], 1e-9)
        kind, limit = goals[family]
        ok = time_ratio <= limit and (kind == "time" or memory_ratio <= 0.25)
        rows.append({"family": family, "ours": ours, "reference": ref, "time_ratio": time_ratio,
                     "memory_ratio": memory_ratio, "goal": f"time <= {limit}x" + (", memory <= 1/4" if kind != "time" else ""),
                     "met": ok})
    report["kernels"] = rows
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"design-space benchmark on {report['device']} ({report['threads']} threads, torch {report['torch']})")
    print(f"cost counting at 224: median {report['cost']['count_ms']:.2f} ms per point "
          f"({report['cost']['sample_and_count_ms']:.2f} ms with sampling); goal <= 100 ms: "
          f"{'met' if report['cost']['sample_and_count_ms'] <= 100 else 'MISSED'}")
    print(f"\nforward+backward at stage-1 shapes ({report['shape']}):")
    names = {"static": "static sliding vs conv2d(groups=C)", "window": "window attention vs timm Swin block",
             "dynamic": "dynamic sliding vs naive unfold"}
    print(f"{'family':38s} {'ours ms':>9s} {'ref ms':>9s} {'ratio':>7s} {'ours MB':>9s} {'ref MB':>9s} {'mem':>6s}  goal")
    for r in rows:
        print(f"{names[r['family']]:38s} {r['ours']['seconds'] * 1e3:9.1f} {r['reference']['seconds'] * 1e3:9.1f} "
              f"{r['time_ratio']:7.2f} {r['ours']['peak_mb']:9.1f} {r['reference']['peak_mb']:9.1f} "
              f"{r['memory_ratio']:6.2f}  {r['goal']}: {'met' if r['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
