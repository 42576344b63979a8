"""A cheap latency source for tests: a predictor file of nas latency build's format, written here, whose linear
model makes attention slow (ATTENTION_MS per attention mixer) and static mixers cheap: no timing anywhere."""

from __future__ import annotations

from pathlib import Path

from searchspace.latency_table import LatencyTable, LinearModel, Network

ATTENTION_MS = 10.0  # a tiny-space network with attention: 4-5 mixers, 40-50 ms; a static one ~5 ms
DEVICE = {
    "cpu": "Test CPU", "cores": 2, "threads": 2, "gpu": None, "torch": "2.14.1", "cuda": None, "backend": "torch",
    "dtype": "fp32", "channels_last": False, "platform": "Linux-x86_64", "load_average": [0.0, 0.0, 0.0],
}


def write_table(path: Path, measured: list | None = None, cpu: str = "Test CPU") -> Path:
    """The file at `path`; `measured`: [(spec, ms)] answered as measured."""
    points = {
        spec.id: {"name": spec.name, "macs": 0, "ms": ms, "iqr_ms": 0.1, "runs": 15, "spec": spec.to_dict()}
        for spec, ms in measured or ()
    }
    table = LatencyTable(
        device={**DEVICE, "cpu": cpu}, protocol={"img_size": 224, "num_classes": 1000, "throughput_batch": 0},
        points=points, parts={}, network=Network(1.0, 0.5),
        linear=LinearModel(["calls dynamic attention", "block calls"], [ATTENTION_MS, 1.0]), predictor="model",
    )
    table.save(path)
    return path
