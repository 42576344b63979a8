"""Inhomogeneous dynamic weights (involution, I-D-DW-Conv): each pixel predicts its own K x K filter per
group from its value (1x1 projections with BN/ReLU between).

Imports torch and searchspace's spec, cost, layers and axes base only.
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from ..layers import LastDimBatchNorm, nchw
from ..spec import register_dynamic
from ._base import PROJECTION, DynamicWeight
from .homogeneous import reset_linears


@register_dynamic
class Inhomogeneous(DynamicWeight):
    name = "inhomogeneous"
    form = "per_pixel"
    weight_norms = ("none", "softmax", "filter_norm")
    options = {"projection": PROJECTION}

    def build(self, mixer: nn.Module) -> None:
        self.build_values(mixer)
        hidden, out = max(1, self.dim // 4), self.heads * self.connectivity.taps
        mixer.generator = nn.Sequential(
            nn.Linear(self.dim, hidden, bias=False), LastDimBatchNorm(hidden), nn.ReLU(), nn.Linear(hidden, out)
        )

    def init_weights(self, mixer: nn.Module) -> None:
        reset_linears(mixer.generator)

    def pixel_weights(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor]:
        b, h, w, _ = x.shape
        v = self.values(mixer, x, gate)
        return nchw(mixer.generator(v)).reshape(b, self.heads, -1, h, w), v

    def cost(self) -> cost.Cost:
        hidden, out, pixels = max(1, self.dim // 4), self.heads * self.connectivity.taps, self.connectivity.pixels
        generator = cost.linear(self.dim, hidden, pixels, bias=False) + cost.norm(hidden) + cost.linear(hidden, out, pixels)
        return self.values_cost() + generator
