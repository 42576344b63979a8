"""Scoring one architecture: data, the proxy recipe, training, and the trial record (DESIGN §5).

Imports searchspace (and torch, timm, torchvision, optuna); never dashboards or nas, and never Ray.
"""

from .data import DEFAULT_DATA, ProxyData, data_name, load_proxy_data
from .train import ProxyRecipe, ProxyResult, TrialFailed, failure_reason, memory_cap, pick_device, train_proxy, train_seeds
from .zero_cost import zero_cost_scores

__all__ = [
    "DEFAULT_DATA",
    "ProxyData",
    "ProxyRecipe",
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
