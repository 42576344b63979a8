"""Homogeneous dynamic weights (D-DW-Conv): global average pool -> linear -> BN/ReLU -> linear gives each
sample one K x K filter per group, the same at every position.

Imports torch and searchspace's spec, cost and axes base only.
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from ..spec import register_dynamic
from ._base import PROJECTION, DynamicWeight


@register_dynamic
class Homogeneous(DynamicWeight):
    name = "homogeneous"
    form = "per_sample"
    weight_norms = ("none", "filter_norm")
    options = {"projection": PROJECTION}

    def build(self, mixer: nn.Module) -> None:
        self.build_values(mixer)
        hidden, out = max(1, self.dim // 4), self.heads * self.connectivity.taps
        mixer.generator = nn.Sequential(
            nn.Linear(self.dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out)
        )

    def init_weights(self, mixer: nn.Module) -> None:
        reset_linears(mixer.generator)

    def filters(self, mixer: nn.Module, v: Tensor) -> Tensor:
        return mixer.generator(v.mean((1, 2))).view(v.shape[0], self.heads, -1)

    def cost(self) -> cost.Cost:
        hidden, out = max(1, self.dim // 4), self.heads * self.connectivity.taps
        return self.values_cost() + cost.linear(self.dim, hidden, 1, bias=False) + cost.norm(hidden) + cost.linear(hidden, out, 1)


def reset_linears(generator: nn.Sequential) -> None:
    """The seeds' generators are 1x1 convolutions with PyTorch's default init (kaiming-uniform weights and
    biases, about 6x the scale of the network's std 0.02), not the network's truncated-normal linears."""
    for layer in generator:
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
