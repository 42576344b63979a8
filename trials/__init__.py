"""Scoring one architecture: data, the proxy recipe, training, and the trial record (DESIGN §5).

Imports searchspace (and torch, timm, torchvision, optuna); never dashboards or nas, and never Ray.
"""

import importlib

from .recipe import BENCH_RECIPE, REFERENCE_RECIPE, ProxyRecipe

# Data and training need torch and load on first use: the commands that only read studies never load it.
_LAZY = {
    **dict.fromkeys(["DEFAULT_DATA", "ProxyData", "data_name", "load_proxy_data"], "data"),
    **dict.fromkeys(["ProxyResult", "TrialFailed", "failure_reason", "memory_cap", "pick_device", "train_proxy", "train_seeds"], "train"),
    "zero_cost_scores": "zero_cost",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BENCH_RECIPE",
    "DEFAULT_DATA",
    "ProxyData",
    "ProxyRecipe",
    "REFERENCE_RECIPE",
    "ProxyResult",
    "TrialFailed",
    "data_name",
    "failure_reason",
    "load_proxy_data",
    "memory_cap",
    "pick_device",
    "train_proxy",
    "train_seeds",
    "zero_cost_scores",
]
