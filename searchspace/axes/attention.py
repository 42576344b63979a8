"""Attention weights: softmax(q.k / sqrt(d)) from linear projections of every pixel (Swin, HaloNet,
neighbourhood attention, PVT); the connectivity adds its relative-position bias.

Imports torch and searchspace's spec, cost and axes base only.
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from ..spec import register_dynamic
from ._base import DynamicWeight, gated


@register_dynamic
class Attention(DynamicWeight):
    name = "attention"
    form = "attention"
    weight_norms = ("softmax",)

    def build(self, mixer: nn.Module) -> None:
        mixer.qkv = nn.Linear(self.dim, 3 * self.dim)

    def qkv(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = mixer.qkv(x).split(self.dim, -1)
        return q, k, gated(v, gate)

    def cost(self) -> cost.Cost:
        return cost.linear(self.dim, 3 * self.dim, self.connectivity.input_tokens())
