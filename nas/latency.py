"""`nas latency` and the latency columns of `nas arch`: measured latency and throughput with their spread and
device, a per-device predictor file, and the presets' measured throughput beside their published one.

The measurement and the predictor are searchspace's (`searchspace.latency`, `searchspace.latency_table`);
this module reads options and prints. Imports searchspace and the console only; torch loads with a measurement.
"""

from __future__ import annotations

from searchspace import format_macs

from .console import emit_json, err, out, table


def protocol_of(img_size=224, num_classes=1000, batch=None, dtype="fp32", threads=None, channels_last=False,
                device="cpu", clock="wall", min_runs=15, backend="torch"):
    from searchspace.latency import Protocol

    return Protocol(
        img_size=img_size, num_classes=num_classes, throughput_batch=batch, dtype=dtype, threads=threads,
        channels_last=channels_last, device=device, clock=clock, min_runs=min_runs, backend=backend,
    )


def _spread(timing) -> str:
    return f"{timing.median_ms:.2f} ms ± {timing.iqr_ms / 2:.2f}"


def _img_s(timing) -> str:
    """img/s with the range its interquartile range gives."""
    if timing is None:
        return ""
    low = 1000 * timing.batch / (timing.median_ms + timing.iqr_ms / 2)
    high = 1000 * timing.batch / max(1e-9, timing.median_ms - timing.iqr_ms / 2)
    return f"{timing.images_per_second:.1f} ({low:.1f}-{high:.1f})"


def measure(refs: list[str], protocol, as_json: bool) -> None:
    """`nas latency measure`: each architecture's latency and throughput, then the device."""
    from searchspace.latency import measure_latency

    results = []
    for ref in refs:
        result = measure_latency(ref, protocol)
        results.append(result)
        if not as_json:
            err.print(f"{result.name or ref}: {_spread(result.latency)}", markup=False)
    if as_json:
        return emit_json([r.to_dict() for r in results])
    batch = protocol.batch
    table(
        f"Latency (batch 1) and throughput (batch {batch}) at {protocol.img_size}x{protocol.img_size}, "
        f"{protocol.num_classes} classes, {protocol.dtype}: median ± half the interquartile range",
        ["name", "id", "MACs", "ms", "spread", "img/s (IQR range)", "ms / GMAC", "runs"],
        [
            (r.name or "", r.id, format_macs(r.macs), f"{r.ms:.2f}", f"{r.latency.relative_spread:.1%}",
             _img_s(r.throughput), f"{r.ms / (r.macs / 1e9):.1f}", r.latency.runs)
            for r in results
        ],
        right=["MACs", "ms", "spread", "img/s (IQR range)", "ms / GMAC", "runs"],
    )
    out.print(f"device: {results[0].device.describe()} (load at the first measurement; clock {protocol.clock})", markup=False)


def latency_block(spec, protocol) -> dict:
    """`nas arch show --latency`: the measurement as a JSON block (and a line for people)."""
    from searchspace.latency import measure_latency

    return measure_latency(spec, protocol).to_dict()


def print_latency_block(block: dict) -> None:
    t = block["throughput"]
    thr = f", {t['images_per_second']:.1f} img/s at batch {t['batch']}" if t else ""
    out.print(
        f"latency: {block['latency_ms']:.2f} ms ± {block['latency_iqr_ms'] / 2:.2f} at batch 1{thr}; "
        f"{block['device']['cpu'] if not block['device']['gpu'] else block['device']['gpu']}, "
        f"{block['device']['threads']} threads, load average {block['device']['load_average'][0]:.1f}",
        markup=False,
    )


def preset_throughput(names: list[str], protocol) -> tuple[list[dict], dict]:
    """`nas arch list --latency`: each preset's measured latency and img/s, beside its published GPU img/s, and
    the rank agreement (Kendall tau) between measured and published img/s over the presets that publish one."""
    from searchspace import published
    from searchspace.latency import measure_latency
    from searchspace.latency_table import kendall_tau

    rows = []
    for name in names:
        result = measure_latency(name, protocol)
        err.print(f"{name}: {_spread(result.latency)}, {_img_s(result.throughput)} img/s", markup=False)
        rows.append({
            "latency_ms": round(result.ms, 3), "latency_iqr_ms": round(result.latency.iqr_ms, 3),
            "images_per_second": round(result.images_per_second, 2) if result.throughput else None,
            "published_images_per_second": published(name).get("img_s"),
            "device": result.device.describe(),
        })
    pairs = [(r["images_per_second"], r["published_images_per_second"]) for r in rows if r["published_images_per_second"]]
    agreement = {
        "presets": len(pairs),
        "kendall_tau": round(kendall_tau(*zip(*pairs)), 4) if len(pairs) >= 3 else None,
        "throughput_batch": protocol.batch,
    }
    return rows, agreement


def build(opts: dict, output: str, as_json: bool) -> None:
    """`nas latency build`: measure, fit, evaluate, keep the better predictor, write the file."""
    from searchspace import load_space
    from searchspace.latency_table import build as build_table
    from searchspace.latency_table import draw

    space = load_space(opts["space"])
    specs = draw(space, opts["budget"], opts["points"], opts["seed"], presets=opts["presets"])
    say = (lambda line: err.print(line, markup=False))
    say(f"measuring {len(specs)} networks ({sum(s.name is not None for s in specs)} presets) and their parts on this machine")
    provenance = {"space": space.name, "space_source": space.source, "budget_macs": opts["budget"], "points": opts["points"]}
    result = build_table(specs, opts["protocol"], folds=opts["folds"], seed=opts["seed"], say=say, provenance=provenance)
    fresh = space.sample_within(opts["budget"], 100, opts["seed"] + 1)
    result.evaluation["lut_coverage_of_fresh_draws"] = round(result.covers(fresh), 4)
    result.save(output)
    if as_json:
        return emit_json({"output": output, **{k: v for k, v in result.to_dict().items() if k not in ("points", "lut", "model")}})
    print_evaluation(result)
    out.print(f"predictor file written to {output} ({len(result.points)} measured points, {len(result.parts)} parts)", markup=False)


def print_evaluation(t) -> None:
    e = t.evaluation
    table(
        f"Held-out points ({e['folds']}-fold: each point predicted by a fit on the others), {e['lut']['n']} points",
        ["predictor", "Kendall tau", "within 10%", "median error", "kept"],
        [
            (p, f"{e[p]['tau']:+.3f}", f"{e[p]['within_10pct']:.0%}", f"{e[p]['median_error']:.1%}", "yes" if p == t.predictor else "")
            for p in ("lut", "model")
        ],
        right=["Kendall tau", "within 10%", "median error"],
    )
    noise = e["measurement"]["median_relative_iqr"]
    out.print(f"measurement noise: median IQR / median of the networks {noise:.1%} (a prediction is judged no finer)", markup=False)
    if "lut_coverage_of_fresh_draws" in e:
        out.print(
            f"LUT coverage: {e['lut_coverage_of_fresh_draws']:.0%} of 100 fresh draws have every part in the table "
            "(the model estimates the parts of the others)", markup=False,
        )
    p = t.provenance
    load = p.get("load_average_end", [0])[0]
    out.print(f"built in {p.get('seconds', 0) / 60:.1f} min; load average at the end {load:.1f}; device: {_device_line(t)}", markup=False)


def _device_line(t) -> str:
    """A predictor file's device and clock in words."""
    device = t.device
    where = device.get("gpu") or f"{device['cpu']}, {device['threads']} of {device['cores']} cores"
    return f"{where}; {device['backend']} {device['torch']}, {device['dtype']}, clock {t.protocol.get('clock', 'wall')}"


def predict(table_path: str, refs: list[str], as_json: bool) -> None:
    """`nas latency predict`: ms from a predictor file, and what answered (measured, lut or model)."""
    from searchspace import count, load_spec
    from searchspace.latency_table import LatencyTable

    t = LatencyTable.load(table_path)
    rows = []
    for ref in refs:
        spec = load_spec(ref)
        source = t.source(spec)
        unseen = t.unseen(spec) if source == "model" else []
        rows.append({"name": spec.name or ref, "id": spec.id, "macs": count(spec).macs, "ms": round(t.predict(spec), 3),
                     "source": source, "unseen_features": unseen})
    if as_json:
        return emit_json({"table": table_path, "device": t.device, "predictor": t.predictor, "predictions": rows})
    table(
        f"Predicted latency (batch 1, ms) on {_device_line(t)}",
        ["name", "id", "MACs", "ms", "source"],
        [(r["name"], r["id"], format_macs(r["macs"]), f"{r['ms']:.2f}", r["source"]) for r in rows],
        right=["MACs", "ms"],
    )
    for r in rows:
        if r["unseen_features"]:
            out.print(f"{r['name']}: the model never saw {', '.join(r['unseen_features'])}; their cost is left out", markup=False)


__all__ = ["build", "latency_block", "measure", "predict", "preset_throughput", "print_latency_block", "protocol_of"]
