"""Search benchmark: the default search end to end, and what Ray's orchestration costs.

Prints, measured in this run:
- the default `nas search --budget 4.5G` (fresh study in a temporary folder): trials finished and
  wall time; goal >= 16 trials and a front in <= 10 minutes on a 2-core CPU;
- orchestration overhead: one trial's training throughput (images/s) under Ray Tune vs the same
  training loop run directly in this process, same spec and recipe; goal >= 0.9;
- Ray start and study set-up seconds.

    python benchmarks/search.py [--skip-default] [--spec u_swin_micro] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def default_search() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run = subprocess.run(
            [str(Path(sys.executable).parent / "nas"), "search", "--budget", "4.5G", "--json"],
            cwd=folder, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        if run.returncode:
            raise SystemExit(f"nas search failed:\n{run.stderr[-3000:]}")
        summary = json.loads(run.stdout)
    runs = summary["this_run"]
    return {
        "wall_seconds": wall,
        "complete": runs["complete"],
        "pruned": runs["pruned"],
        "failed": runs["failed"],
        "trained": runs["complete"] + runs["pruned"] + runs["failed"],
        "front_points": len(summary["front"]),
        "front": summary["front"],
    }


def overhead(spec_name: str) -> dict:
    import ray
    import torch
    from ray import tune

    from nas.search import SearchOptions, prepare, start_ray
    from nas.trainable import proxy_trial
    from searchspace import parse_macs, preset
    from trials import ProxyRecipe, load_proxy_data, train_proxy

    recipe = ProxyRecipe()
    spec = preset(spec_name)
    data = load_proxy_data(None, recipe.resolution, recipe.subset, recipe.val_size, recipe.seed)

    torch.set_num_threads(1)
    direct = list(train_proxy(spec, data, recipe))[-1].images_per_second

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        prepare(SearchOptions(budget=parse_macs("4.5G"), storage=f"sqlite:///{folder}/bench.db"), say=lambda *_: None)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        start_ray(None, say=lambda *_: None)
        ray_start = time.perf_counter() - start
        trainable = tune.with_resources(
            tune.with_parameters(proxy_trial, data=data, recipe=recipe.as_dict(), threads=1), {"cpu": 1}
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"spec": spec.to_dict()},
            run_config=tune.RunConfig(storage_path=folder, name="overhead", verbose=0),
        )
        result = tuner.fit()[0]
        under_ray = result.metrics["images_per_second"]
        ray.shutdown()
    return {
        "spec": spec_name,
        "direct_images_per_second": direct,
        "ray_images_per_second": under_ray,
        "ratio": under_ray / direct,
        "ray_start_seconds": ray_start,
        "study_setup_seconds": setup,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-default", action="store_true", help="only the overhead figures")
    parser.add_argument("--spec", default="u_swin_micro", help="preset trained for the overhead figure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {"overhead": overhead(args.spec)}
    if not args.skip_default:
        report["default_search"] = default_search()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    o = report["overhead"]
    print("search benchmark")
    print(
        f"orchestration: {o['spec']} trains at {o['ray_images_per_second']:.0f} img/s under Ray Tune vs "
        f"{o['direct_images_per_second']:.0f} img/s directly: ratio {o['ratio']:.2f} (goal >= 0.9: "
        f"{'met' if o['ratio'] >= 0.9 else 'MISSED'})"
    )
    print(f"Ray start {o['ray_start_seconds']:.1f}s, study set-up (space, storage, data) {o['study_setup_seconds']:.1f}s")
    if "default_search" in report:
        d = report["default_search"]
        ok = d["trained"] >= 16 and d["front_points"] > 0 and d["wall_seconds"] <= 600
        print(
            f"default `nas search --budget 4.5G`: {d['trained']} trials trained ({d['complete']} complete, "
            f"{d['pruned']} pruned, {d['failed']} failed), front of {d['front_points']} point(s) in "
            f"{d['wall_seconds'] / 60:.1f} min (goal >= 16 trials and a front in <= 10 min: {'met' if ok else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
