"""GPU checks and figures in one short run (a few minutes): the CUDA paths of building, training and the
kernels, and how many trials share one GPU. Run it whenever a machine with a GPU is at hand.

- build at 224: swin_t and a dynamic-convolution preset, forward+backward at batch 32, in fp32 and under
  bf16 autocast (what proxy training uses on CUDA): ms per step, peak memory, largest output difference;
- one proxy trial on the GPU (the default recipe through trials.train_proxy): seconds, images/s, top-1;
- each kernel against its reference on the GPU (benchmarks/design_space.py's cases: static sliding vs
  conv2d(groups=C), window attention vs timm's Swin block, dynamic sliding vs a naive unfold), and
  neighbourhood attention (sliding logits, softmax, aggregate) against NATTEN's na2d where NATTEN is
  installed: time, and agreement on the pixels whose neighbourhood lies inside the map (NATTEN shifts
  the window at the border, ours pads);
- trials per GPU: `nas search` of 8 tiny trials at --gpus-per-trial 0.25 and at 1: the most that ran at
  once (from the study's start and end times) and trials per minute.
Without CUDA it prints "no CUDA device" and exits 0.

    python benchmarks/gpu.py [--skip-search] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # datalib: data where Debian's Fashion-MNIST is not installed


def timed_steps(step, reps: int = 5) -> float:
    import torch

    step()  # warm-up (and cuDNN's choice of algorithms)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_at_224(names=("swin_t", "dwnet_t"), batch: int = 32) -> list[dict]:
    import torch

    from searchspace import build_model, preset

    rows = []
    for name in names:
        torch.manual_seed(0)
        model = build_model(preset(name)).cuda()
        x = torch.randn(batch, 3, 224, 224, device="cuda")
        with torch.no_grad():
            reference = model(x).float()
        row = {"network": name, "batch": batch}
        for precision in ("fp32", "bf16"):

            def step(model=model, x=x, bf16=precision == "bf16"):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    out = model(x)
                out.float().sum().backward()

            torch.cuda.reset_peak_memory_stats()
            row[f"{precision}_ms"] = timed_steps(step) * 1e3
            row[f"{precision}_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                row[f"{precision}_max_diff"] = float((model(x).float() - reference).abs().max())
            model.zero_grad(set_to_none=True)
        rows.append(row)
        del model
        torch.cuda.empty_cache()
    return rows


def proxy_data_folder() -> str | None:
    from trials.data import DEBIAN_FASHION_MNIST

    if DEBIAN_FASHION_MNIST.exists():
        return None
    from datalib import fashion_like

    return str(fashion_like(Path(tempfile.mkdtemp(prefix="gpu-data-")) / "fashion-mnist"))


def proxy_trial(data_folder: str | None, base: str = "cpu") -> dict:
    """One proxy trial on the GPU by the recipe --proxy-base names (cpu: the default; gpu: trials.recipe.GPU_RECIPE)."""
    from searchspace import preset
    from trials import load_proxy_data, train_proxy
    from trials.recipe import BASES

    recipe = BASES[base]
    data = load_proxy_data(data_folder, recipe.resolution, recipe.subset, recipe.val_size, recipe.seed)
    start = time.perf_counter()
    last = list(train_proxy(preset("u_swin_micro"), data, recipe, "cuda"))[-1]
    return {"network": "u_swin_micro", "recipe": base, "seconds": time.perf_counter() - start,
            "images_per_second": last.images_per_second, "top1": last.proxy_top1, "device": last.device}


def kernels(batch: int = 8, dim: int = 96, size: int = 56) -> list[dict]:
    from design_space import case_inputs

    rows = []
    for family in ("static", "window", "dynamic"):
        times = {}
        for side in ("ours", "ref"):
            op, x = case_inputs(f"{family}_{side}", batch, dim, size, "cuda")
            times[side] = timed_steps(lambda op=op, x=x: op(x).sum().backward())
        rows.append({"kernel": family, "ours_ms": times["ours"] * 1e3, "reference_ms": times["ref"] * 1e3,
                     "ratio": times["ours"] / times["ref"]})
    rows.append(neighbourhood_attention(batch, dim, size))
    return rows


def neighbourhood_attention(batch: int, dim: int, size: int, kernel: int = 7, heads: int = 3) -> dict:
    """Ours (sliding logits, masked softmax, aggregate) against NATTEN's na2d on the same q, k, v."""
    import torch

    from searchspace.kernels import neighbourhood_mask, sliding_aggregate, sliding_logits

    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, dim, size, size, device="cuda", requires_grad=True) for _ in range(3))
    head_dim = dim // heads

    def ours():
        logits = sliding_logits(q * head_dim**-0.5, k, kernel, heads)
        weights = (logits + neighbourhood_mask(kernel, size, size, q.device, q.dtype)).softmax(2)
        return sliding_aggregate(v, weights.contiguous(), kernel)

    row = {"kernel": "neighbourhood attention vs NATTEN", "ours_ms": timed_steps(lambda: ours().sum().backward()) * 1e3}
    try:
        from natten.functional import na2d
    except ImportError:
        row["natten"] = "not installed (pip install natten, a build for this torch and CUDA): ours timed alone"
        return row

    def heads_last(t):  # (B, C, H, W) -> (B, H, W, heads, head_dim), NATTEN's layout
        return t.view(batch, heads, head_dim, size, size).permute(0, 3, 4, 1, 2).contiguous()

    def theirs():
        out = na2d(heads_last(q), heads_last(k), heads_last(v), kernel_size=kernel)
        return out.permute(0, 3, 4, 1, 2).reshape(batch, dim, size, size)

    row["reference_ms"] = timed_steps(lambda: theirs().sum().backward()) * 1e3
    row["ratio"] = row["ours_ms"] / row["reference_ms"]
    with torch.no_grad():
        inner = slice(kernel // 2, size - kernel // 2)
        row["max_diff_inside"] = float((ours() - theirs())[..., inner, inner].abs().max())
    return row


def trials_per_gpu(data_folder: str | None, fractions=(0.25, 1.0), trials: int = 8) -> list[dict]:
    """`nas search` as users run it, at each --gpus-per-trial; the study's times tell how many ran at once."""
    import optuna

    rows = []
    for fraction in fractions:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/gpu.db"
            args = ["search", "--budget", "4.5G", "--space", "tiny", "--scheduler", "none", "--trials", str(trials),
                    "--gpus-per-trial", str(fraction), "--cpus-per-trial", "1", "--storage", url, "--json"]
            if data_folder:
                args += ["--data", data_folder]
            start = time.perf_counter()
            done = subprocess.run([str(Path(sys.executable).parent / "nas"), *args], cwd=folder, capture_output=True, text=True,
                                  env={**os.environ, "NAS_CACHE_DIR": folder})
            wall = time.perf_counter() - start
            if done.returncode:
                rows.append({"gpus_per_trial": fraction, "error": done.stderr.strip().splitlines()[-1]})
                continue
            study = optuna.load_study(study_name=json.loads(done.stdout)["study"], storage=url)
            spans = [(t.datetime_start, t.datetime_complete) for t in study.trials if t.datetime_complete]
            at_once = max(sum(s <= start_ < e for s, e in spans) for start_, _ in spans)
            first, last = min(s for s, _ in spans), max(e for _, e in spans)
            rows.append({"gpus_per_trial": fraction, "trials": len(spans), "most_at_once": at_once, "wall_seconds": wall,
                         "trials_per_minute": len(spans) / max((last - first).total_seconds(), 1e-9) * 60})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-search", action="store_true", help="leave out the trials-per-GPU searches (Ray)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}): nothing to check here")
        return
    started = time.perf_counter()
    data = proxy_data_folder()
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "build_224": build_at_224(), "proxy_trial": proxy_trial(data),
              "gpu_proxy_trial": proxy_trial(data, "gpu") if data is None else None, "kernels": kernels()}
    if not args.skip_search:
        report["trials_per_gpu"] = trials_per_gpu(data)
    report["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"GPU benchmark on {report['device']} (torch {report['torch']}, CUDA {report['cuda']}), {report['seconds']:.0f}s")
    print("\nbuild at 224, forward+backward:")
    for r in report["build_224"]:
        print(f"  {r['network']:10s} batch {r['batch']}: fp32 {r['fp32_ms']:.1f} ms {r['fp32_peak_gb']:.2f} GB | bf16 "
              f"{r['bf16_ms']:.1f} ms {r['bf16_peak_gb']:.2f} GB, largest output difference to fp32 {r['bf16_max_diff']:.3f}")
    for p in filter(None, (report["proxy_trial"], report["gpu_proxy_trial"])):
        print(f"\none proxy trial ({p['network']}, --proxy-base {p['recipe']}) on {p['device']}: {p['seconds']:.1f}s, "
              f"{p['images_per_second']:.0f} images/s, top-1 {p['top1']:.1f}%")
    print("\nkernels against their references (forward+backward):")
    for r in report["kernels"]:
        line = f"  {r['kernel']:34s} ours {r['ours_ms']:.2f} ms"
        if "reference_ms" in r:
            line += f", reference {r['reference_ms']:.2f} ms, ratio {r['ratio']:.2f}"
        if "max_diff_inside" in r:
            line += f", largest difference inside the map {r['max_diff_inside']:.2e}"
        print(line + (f" (NATTEN {r['natten']})" if "natten" in r else ""))
    for r in report.get("trials_per_gpu", []):
        if "error" in r:
            print(f"\n--gpus-per-trial {r['gpus_per_trial']:g}: the search failed: {r['error']}")
            continue
        print(f"\n--gpus-per-trial {r['gpus_per_trial']:g}: {r['trials']} trials, at most {r['most_at_once']} at once, "
              f"{r['trials_per_minute']:.1f} trials/min ({r['wall_seconds']:.0f}s with Ray's start)")


if __name__ == "__main__":
    main()
