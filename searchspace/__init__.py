"""What a network is and what it costs: spec, space files, token mixer, blocks, builder, cost, presets.

The lowest layer (DESIGN §5): imports torch, timm, pydantic and yaml, never trials, dashboards or nas.
"""

from .cost import CONVENTION, Cost, format_budget, format_macs, format_params, measure_macs, parse_macs
from .errors import NasError
from .blocks import feature_sizes
from .model import build_model, cost_by_part, count, measure, stage_sizes
from .presets import TOLERANCE, load_spec, preset, preset_by_id, preset_names, published
from .space import DEFAULT_SPACE, SearchSpace, load_space
from .spec import ArchSpec, MixerSpec, StageSpec, spec_from_data

__all__ = [
    "CONVENTION",
    "DEFAULT_SPACE",
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
    "measure",
    "measure_macs",
    "parse_macs",
    "preset",
    "preset_by_id",
    "preset_names",
    "published",
    "spec_from_data",
    "stage_sizes",
]
