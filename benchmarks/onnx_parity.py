"""ONNX parity: every preset and points drawn from the unified space, exported and run by onnxruntime beside PyTorch.

For each network (seeded initial weights, one image at --img-size): whether it exports, the largest absolute
difference between onnxruntime's (CPUExecutionProvider) and PyTorch's logits (goal: <= 1e-4 everywhere), the
seconds the export and check took, and the kernels its token mixers run. A network that cannot be exported is
listed with the one-line reason `nas arch export` would print.

    python benchmarks/onnx_parity.py [--points 50] [--budget 4.5G] [--seed 0] [--img-size 224] [--opset 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time


def kernels_of(model) -> list[str]:
    from searchspace.mixer import TokenMixer
    from searchspace.onnx_export import kernel_name

    return sorted({kernel_name(m).split(" ")[0] for m in model.modules() if isinstance(m, TokenMixer)})


def check(spec, img_size: int, num_classes: int, opset: int) -> dict:
    import torch

    from searchspace import NasError, build_model, count
    from searchspace.onnx_export import to_onnx

    torch.manual_seed(0)
    model = build_model(spec, num_classes=num_classes, img_size=img_size)
    row = {"name": spec.name or spec.id, "id": spec.id, "macs": count(spec, img_size=img_size).macs, "kernels": kernels_of(model)}
    start = time.perf_counter()
    try:
        done = to_onnx(model, torch.randn(1, 3, img_size, img_size), opset=opset, name=row["name"])
        row.update(ok=True, max_abs_diff=done.max_abs_diff, mib=len(done.data) / 2**20)
    except NasError as exc:
        row.update(ok=False, reason=str(exc))
    row["seconds"] = time.perf_counter() - start
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=50, help="points drawn from the unified space within --budget")
    parser.add_argument("--budget", default="4.5G")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--opset", type=int, default=None, help="[default: searchspace.onnx_export.DEFAULT_OPSET]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from searchspace import format_macs, load_space, parse_macs, preset, preset_names
    from searchspace.onnx_export import DEFAULT_OPSET, TOLERANCE

    opset = args.opset or DEFAULT_OPSET
    specs = [preset(name) for name in preset_names()]
    points = load_space("unified").sample_within(parse_macs(args.budget), args.points, seed=args.seed, img_size=args.img_size)
    specs += [p.model_copy(update={"name": f"point{i}"}) for i, p in enumerate(points)]
    load_before = os.getloadavg()[0]
    rows = []
    for spec in specs:
        rows.append(check(spec, args.img_size, args.num_classes, opset))
        if not args.json:
            r = rows[-1]
            figure = f"{r['max_abs_diff']:9.1e}" if r["ok"] else "  refused"
            print(f"{r['name']:22s} {format_macs(r['macs']):>7s} {figure} {r['seconds']:6.1f}s  {', '.join(r['kernels'])}"
                  + ("" if r["ok"] else f"\n    {r['reason']}"), flush=True)
    done = [r for r in rows if r["ok"]]
    summary = {
        "networks": len(rows), "presets": len(preset_names()), "points": len(points), "img_size": args.img_size,
        "opset": opset, "tolerance": TOLERANCE, "exported": len(done), "refused": len(rows) - len(done),
        "within_tolerance": sum(r["max_abs_diff"] <= TOLERANCE for r in done),
        "max_abs_diff": max((r["max_abs_diff"] for r in done), default=None),
        "median_seconds": sorted(r["seconds"] for r in rows)[len(rows) // 2],
        "kernels_covered": sorted({k for r in done for k in r["kernels"]}),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    if args.json:
        print(json.dumps({"summary": summary, "rows": rows}, indent=2))
        return
    print(f"\n{summary['networks']} networks ({summary['presets']} presets, {summary['points']} points within {args.budget} "
          f"of the unified space, seed {args.seed}) at {args.img_size}px, opset {opset}: {summary['exported']} exported, "
          f"{summary['refused']} refused; {summary['within_tolerance']} within {TOLERANCE:.0e} of PyTorch, largest max abs "
          f"diff {summary['max_abs_diff']:.1e}; median {summary['median_seconds']:.0f} s per network (export and check) "
          f"at load average {summary['load_average'][0]} -> {summary['load_average'][1]}")
    print(f"kernels exported: {', '.join(summary['kernels_covered'])}")


if __name__ == "__main__":
    main()
