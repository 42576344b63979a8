"""Kernels at par: each kernel of the token mixer against the best available implementation of the same
operation, on the same device, shapes and threads, forward only (what a latency objective measures).

A latency objective must reflect the architecture, not our implementation: the goal is every kernel within
1.2x of the best at batch 1 and at a throughput batch. Shapes are Swin-T's four stages (56x56x96 with 3 heads,
28x28x192 / 6, 14x14x384 / 12, 7x7x768 / 24). References:

  window/attention (Swin, shifted, rel-pos)    timm's Swin block attention (WindowAttention with its partition)
  halo/attention (HaloNet, block 7, halo 3)    timm's HaloAttn
  sliding/static (DWNet)                       conv2d(groups=C), NCHW and channels-last
  sliding/homogeneous (D-DW-Conv)              the same filter generator + the batch folded into channels (its
                                               authors' code), or + one conv2d(groups=C) per sample
  sliding/inhomogeneous (involution)           the aggregation alone against the involution's unfold
  sliding/attention (neighbourhood attention)  the same q, k, v projection + an unfold implementation, or NATTEN's
                                               na2d (on CPU NATTEN runs uncompiled Flex Attention: maps <= 14x14)
  global/attention (ViT)                       timm's ViT Attention (torch's fused SDPA)
  global/attention /R (PVT, R = 8, 4, 2, 1)     timm's PVTv2 Attention with sr_ratio R
  deformable/inhomogeneous (DCNv3)             the same offset/weight layers + torchvision's deform_conv2d
  window/static (Local MLP)                    one einsum over timm's window partition (no library has it)

(window/inhomogeneous and sliding/hadamard aggregate with the same kernels as window/static and
sliding/inhomogeneous.) Each kernel also runs exported to ONNX in onnxruntime (CPUExecutionProvider, the same
threads): the second latency backend. Timings are torch.utils.benchmark's blocked_autorange, ours and the
references interleaved round by round so both sides see the same load; a ratio is the median over rounds of
ours / the fastest reference, with the rounds' range.

    python benchmarks/kernels.py [--batches 1,32] [--stages 1,2,3,4] [--kernels halo,sliding] [--rounds 3]
                                 [--threads 1] [--no-onnx] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL = 1.2
STAGES = {1: (56, 96, 3), 2: (28, 192, 6), 3: (14, 384, 12), 4: (7, 768, 24)}  # Swin-T: map side, channels, heads
UNFOLD_LIMIT = 2**30  # bytes: an unfold reference that would copy more is not run (K*K copies of its input)
NATTEN_PIXELS = 14 * 14  # NATTEN on CPU runs uncompiled Flex Attention: an N x N score matrix; only on small maps


@dataclass
class Case:
    """One kernel at one shape: ours (a module and its input, also exported for onnxruntime) and references."""

    kernel: str
    ours: object  # nn.Module
    x: object  # Tensor
    references: dict = field(default_factory=dict)  # name -> zero-argument callable
    notes: list = field(default_factory=list)


def mixer(dim, size, *, value_proj=True, out_dim=-1, shifted=False, **spec):
    from searchspace.mixer import TokenMixer
    from searchspace.spec import MixerSpec

    return TokenMixer(MixerSpec(**spec), dim, (size, size), shifted=shifted, value_proj=value_proj, out_dim=out_dim).eval()


def cases(batch: int, stage: int) -> list[Case]:
    import torch

    size, dim, heads = STAGES[stage]
    torch.manual_seed(0)
    x = torch.randn(batch, size, size, dim)  # channels-last, as the network's blocks hand it to the mixer
    builders = (window_attention, sliding_static, halo_attention, homogeneous, involution, neighbourhood_attention,
                global_attention, reduced_attention, deformable, local_mlp)
    return [build(x, stage) for build in builders]


def window_attention(x, stage) -> Case:  # design_space's case, the same modules it times forward+backward
    from design_space import case_inputs

    b, size, _, dim = x.shape
    ours, _ = case_inputs("window_ours", b, dim, size, "cpu")
    swin, _ = case_inputs("window_ref", b, dim, size, "cpu")
    return Case("window/attention", ours.eval(), x, {"timm Swin": lambda: swin(x)})


def sliding_static(x, stage) -> Case:
    from design_space import case_inputs

    b, size, _, dim = x.shape
    ours, _ = case_inputs("static_ours", b, dim, size, "cpu")
    conv, _ = case_inputs("static_ref", b, dim, size, "cpu")
    nchw = x.permute(0, 3, 1, 2)
    contiguous = nchw.contiguous()
    case = Case("sliding/static", ours.eval(), x, {"conv2d(groups=C)": lambda: conv(contiguous),
                                                   "conv2d(groups=C), channels-last": lambda: conv(nchw)})
    case.notes.append("the NCHW conv reads a copy made before the timing; ours takes the network's channels-last map "
                      "as it is (converting it costs more than the two convs differ)")
    return case


def halo_attention(x, stage) -> Case:
    from timm.layers.halo_attn import HaloAttn

    size, dim, heads = STAGES[stage]
    ours = mixer(dim, size, connectivity="halo", dynamic="attention", kernel=7, halo=3, heads=heads, out_dim=None)
    halo = HaloAttn(dim, dim, num_heads=heads, block_size=7, halo_size=3, qkv_bias=True).eval()
    nchw = x.permute(0, 3, 1, 2).contiguous()
    return Case("halo/attention", ours, x, {"timm HaloAttn": lambda: halo(nchw)})


def homogeneous(x, stage) -> Case:
    """Per-sample filters from the same generator, then the two ways to convolve each sample with its own
    filters: the batch folded into channels (D-DW-Conv's and DDF's code) or one conv per sample."""
    import torch
    import torch.nn.functional as F

    b, size, _, dim = x.shape
    heads = STAGES[stage][2]
    ours = mixer(dim, size, connectivity="sliding", dynamic="homogeneous", kernel=7, heads=heads, value_proj=False, out_dim=None)
    nchw = x.permute(0, 3, 1, 2)

    def filters():
        return ours.generator(x.mean((1, 2))).view(b, heads, 1, 49).repeat_interleave(dim // heads, 1).view(b * dim, 1, 7, 7)

    def folded():
        out = F.conv2d(nchw.reshape(1, b * dim, size, size), filters(), ours.static_bias.repeat(b), padding=3, groups=b * dim)
        return out.view(b, dim, size, size)

    def per_sample():
        f = filters()
        return torch.cat([F.conv2d(nchw[i : i + 1], f[i * dim : (i + 1) * dim], ours.static_bias, padding=3, groups=dim)
                          for i in range(b)])

    return Case("sliding/homogeneous", ours, x, {"batch folded into channels": folded, "one conv per sample": per_sample})


def global_attention(x, stage) -> Case:
    from timm.models.vision_transformer import Attention

    b, size, _, dim = x.shape
    heads = STAGES[stage][2]
    ours = mixer(dim, size, connectivity="global", dynamic="attention", heads=heads)
    vit = Attention(dim, num_heads=heads, qkv_bias=True).eval()
    tokens = x.reshape(b, size * size, dim)
    return Case("global/attention", ours, x, {"timm ViT Attention (SDPA)": lambda: vit(tokens)})


def reduced_attention(x, stage) -> Case:
    from timm.models.pvt_v2 import Attention

    b, size, _, dim = x.shape
    heads, reduction = STAGES[stage][2], {1: 8, 2: 4, 3: 2, 4: 1}[stage]  # PVT's reductions
    ours = mixer(dim, size, connectivity="global", dynamic="attention", reduction=reduction, heads=heads)
    pvt = Attention(dim, num_heads=heads, sr_ratio=reduction).eval()
    tokens = x.reshape(b, size * size, dim)
    return Case(f"global/attention /{reduction}", ours, x, {"timm PVTv2 Attention": lambda: pvt(tokens, [size, size])})


def local_mlp(x, stage) -> Case:
    import torch
    from timm.models.swin_transformer import window_partition, window_reverse

    size, dim, heads = STAGES[stage]
    ours = mixer(dim, size, connectivity="window", dynamic="static", kernel=7, heads=heads, value_proj=False, out_dim=None)

    def einsum():
        windows = window_partition(x, (7, 7)).view(-1, 49, heads, dim // heads)
        mixed = torch.einsum("gij,bjgd->bigd", ours.static_weight[0], windows)
        return window_reverse(mixed.reshape(-1, 7, 7, dim), (7, 7), size, size)

    return Case("window/static", ours, x, {"einsum over timm's windows": einsum})


def involution(x, stage) -> Case:
    """Per-pixel filters: the aggregation alone (the generator is two linears, the same on both sides)."""
    import torch
    from torch import nn

    from design_space import case_inputs
    from searchspace.kernels import sliding_aggregate

    batch, (size, dim, heads) = x.shape[0], STAGES[stage]
    weights = torch.randn(batch, heads, 49, size, size)

    class Aggregate(nn.Module):  # ours as a module, for the ONNX export
        def forward(self, v):
            return sliding_aggregate(v, weights, 7)

    value = torch.randn(batch, dim, size, size)
    case = Case("sliding/inhomogeneous", Aggregate(), value)
    if batch * dim * 49 * size * size * 4 <= UNFOLD_LIMIT:
        naive, _ = case_inputs("dynamic_ref", batch, dim, size, "cpu")  # design_space's unfold (groups = dim / 32)
        case.references["unfold (involution's code)"] = lambda: naive(value)
    else:
        case.notes.append(f"the unfold reference would copy {batch * dim * 49 * size * size * 4 / 2**30:.1f} GiB: not run")
    return case


def neighbourhood_attention(x, stage) -> Case:
    """The mixer's q, k, v projection, then attention over each pixel's 7x7 neighbourhood."""
    import torch
    import torch.nn.functional as F

    from searchspace.kernels import neighbourhood_mask

    batch, (size, dim, heads) = x.shape[0], STAGES[stage]
    head_dim, k = dim // heads, 7
    ours = mixer(dim, size, connectivity="sliding", dynamic="attention", kernel=k, heads=heads, rel_pos=False, out_dim=None)
    case = Case("sliding/attention", ours, x)
    if 2 * batch * dim * k * k * size * size * 4 <= UNFOLD_LIMIT:
        mask = neighbourhood_mask(k, size, size)

        def unfolded():
            q, key, v = (t.permute(0, 3, 1, 2) for t in ours.qkv(x).split(dim, -1))
            keys = F.unfold(key, k, padding=k // 2).view(batch, heads, head_dim, k * k, size, size)
            values = F.unfold(v, k, padding=k // 2).view(batch, heads, head_dim, k * k, size, size)
            logits = (q.reshape(batch, heads, head_dim, 1, size, size) * keys).sum(2) * head_dim**-0.5
            return ((logits + mask).softmax(2).unsqueeze(2) * values).sum(3).view(batch, dim, size, size)

        case.references["unfold"] = unfolded
    else:
        case.notes.append("the unfold reference would copy over 1 GiB: not run")
    try:
        from natten import na2d
    except ImportError:
        case.notes.append("NATTEN is not installed (pip install natten)")
        return case
    if size * size > NATTEN_PIXELS:
        case.notes.append("NATTEN on CPU runs uncompiled Flex Attention (an N x N score matrix; its compiled path "
                          "needs a CUDA GPU of compute capability 7.0+): timed on maps of 14x14 and below only")
        return case

    def natten():  # NATTEN's layout (B, H, W, heads, head_dim): views of the projection
        q, key, v = (t.reshape(batch, size, size, heads, head_dim) for t in ours.qkv(x).split(dim, -1))
        return na2d(q, key, v, kernel_size=k)

    case.references["NATTEN na2d (CPU: uncompiled Flex)"] = natten
    return case


def deformable(x, stage) -> Case:
    """DCNv3: ours (context conv, offsets and weights, grid_sample) against the same layers + deform_conv2d."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import deform_conv2d

    from searchspace.layers import nchw, nhwc

    size, dim, _ = STAGES[stage]
    groups, k = dim // 16, 3  # InternImage: 16 channels per group, 3x3 points
    ours = mixer(dim, size, connectivity="deformable", dynamic="inhomogeneous", kernel=k, heads=groups, value_proj=False, out_dim=None)
    ones = torch.ones(dim, 1, k, k)
    b = x.shape[0]

    def torchvision_dcn():
        context = F.gelu(ours.context_norm(nhwc(ours.context(nchw(x)))))
        offsets = nchw(ours.offset(context))  # (B, 2*G*K*K, H, W), pixel units in torchvision
        weights = ours.point_weight(context).view(b, size, size, groups, k * k).softmax(-1)
        weights = nchw(weights.reshape(b, size, size, groups * k * k))
        return deform_conv2d(nchw(x), offsets, ones, padding=k // 2, mask=weights)

    return Case("deformable/inhomogeneous", ours, x, {"same layers + torchvision deform_conv2d": torchvision_dcn})


def timed(fn, threads: int, min_time: float):
    from torch.utils.benchmark import Timer

    return Timer("fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=min_time)


def measure(case: Case, threads: int, rounds: int, min_time: float, onnx: bool) -> dict:
    import torch
    from torch.utils.benchmark import Measurement

    sides = {"ours": lambda: case.ours(case.x), **case.references}
    row = {"kernel": case.kernel, "notes": list(case.notes)}
    if onnx:
        from searchspace import NasError
        from searchspace.onnx_export import onnxruntime_runner

        try:
            sides["ours in onnxruntime"] = onnxruntime_runner(case.ours, case.x, threads)
        except NasError as exc:
            row["notes"].append(f"onnxruntime: {exc}")
    times = {name: [] for name in sides}
    with torch.inference_mode():
        for fn in sides.values():
            fn()  # warm-up
        for _ in range(rounds):  # interleaved: each round times every side once, under the same load
            for name, fn in sides.items():
                times[name].append(timed(fn, threads, min_time))
    merged = {name: Measurement.merge(ms)[0] for name, ms in times.items()}
    row["ms"] = {name: m.median * 1e3 for name, m in merged.items()}
    row["iqr_ms"] = {name: m.iqr * 1e3 for name, m in merged.items()}
    if case.references:
        best = min(case.references, key=lambda name: merged[name].median)
        row["best"] = best
        for side in ("ours", "ours in onnxruntime"):
            if side in times:
                ratios = [a.median / b.median for a, b in zip(times[side], times[best])]
                row[f"{side} / best"] = {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,32", help="batch sizes: latency (1) and throughput")
    parser.add_argument("--stages", default="1,2,3,4", help="Swin-T stages whose shapes to time")
    parser.add_argument("--kernels", help="only kernels whose name contains one of these (comma separated)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of one blocked_autorange")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of torch and onnxruntime (on a machine shared with other work, two OpenMP "
                             "threads wait on each other and times scatter over 100x: one thread is the default)")
    parser.add_argument("--no-onnx", action="store_true", help="leave onnxruntime out")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import warnings

    import torch

    warnings.filterwarnings("ignore")  # NATTEN's Flex Attention warns at every call
    threads = args.threads
    torch.set_num_threads(threads)
    load = [os.getloadavg()[0]]
    rows = []
    wanted = args.kernels.split(",") if args.kernels else None
    if not args.json:
        print(f"kernels at par: forward, CPU, {threads} threads, torch {torch.__version__}; load average {load[0]:.1f} "
              f"on {os.cpu_count()} cores; ratio = median over {args.rounds} interleaved rounds [range]")
        print(f"{'kernel':28s} {'shape':>15s} {'ours ms':>9s} {'best ms':>9s} {'ours/best':>17s} {'ORT/best':>17s}  best")
    for batch in map(int, args.batches.split(",")):
        for stage in map(int, args.stages.split(",")):
            size, dim, _ = STAGES[stage]
            for case in cases(batch, stage):
                if wanted and not any(w in case.kernel for w in wanted):
                    continue
                row = {"batch": batch, "stage": stage, "shape": f"{batch}x{size}x{size}x{dim}",
                       **measure(case, threads, args.rounds, args.min_time, not args.no_onnx)}
                rows.append(row)
                if not args.json:
                    print_row(row)
    load.append(os.getloadavg()[0])
    compared = [r for r in rows if "best" in r]
    slow = [r for r in compared if r["ours / best"]["median"] > GOAL]
    if args.json:
        print(json.dumps({"threads": threads, "load_average": load, "goal": GOAL, "rows": rows}, indent=2))
        return
    print(f"\nload average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} cores (a shared machine: compare ratios, "
          f"both sides timed in the same rounds)")
    print(f"within {GOAL}x of the best: {len(compared) - len(slow)} of {len(compared)} kernel shapes"
          + ("" if not slow else "; slower: " + ", ".join(f"{r['kernel']} at {r['shape']}" for r in slow)))


def print_row(row: dict) -> None:
    def ratio(side):
        r = row.get(f"{side} / best")
        return f"{r['median']:5.2f} [{r['low']:.2f}-{r['high']:.2f}]" if r else "-"

    best = row.get("best")
    best_ms = f"{row['ms'][best]:9.2f}" if best else f"{'-':>9s}"
    print(f"{row['kernel']:28s} {row['shape']:>15s} {row['ms']['ours']:9.2f} {best_ms} {ratio('ours'):>17s} "
          f"{ratio('ours in onnxruntime'):>17s}  {best or ''}", flush=True)
    for note in row["notes"]:
        print(f"{'':30s}note: {note}")


if __name__ == "__main__":
    main()
