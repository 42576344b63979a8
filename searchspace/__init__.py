"""What a network is and what it costs: spec, space files, token mixer, blocks, builder, cost, presets, latency.

The lowest layer (DESIGN §5): imports torch, timm, pydantic and yaml (onnx_export: onnxruntime and, through
torch.onnx, onnx and onnxscript), never trials, dashboards or nas.
"""

import importlib

from .cost import CONVENTION, Cost, format_budget, format_macs, format_params, measure_macs, parse_macs
from .errors import NasError
from .geometry import feature_sizes
from .presets import TOLERANCE, MacsClass, load_spec, macs_classes, preset, preset_by_id, preset_names, published, spec_from_data
from .spec import ArchSpec, MixerSpec, StageSpec

# What needs torch loads on first use: the commands that only read studies (nas pareto ...) never load it.
_LAZY = {
    "build_model": "model", "cost_by_part": "model", "count": "model", "measure": "model", "stage_sizes": "model",
    "DEFAULT_SPACE": "space", "SearchSpace": "space", "load_space": "space",
    "measure_latency": "latency", "LatencyTable": "latency_table",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONVENTION",
    "DEFAULT_SPACE",
    "LatencyTable",
    "MacsClass",
    "TOLERANCE",
    "ArchSpec",
    "Cost",
    "MixerSpec",
    "NasError",
    "SearchSpace",
    "StageSpec",
    "build_model",
    "cost_by_part",
    "count",
    "feature_sizes",
    "format_budget",
    "format_macs",
    "format_params",
    "load_space",
    "load_spec",
    "macs_classes",
    "measure",
    "measure_latency",
    "measure_macs",
    "parse_macs",
    "preset",
    "preset_by_id",
    "preset_names",
    "published",
    "spec_from_data",
    "stage_sizes",
]
