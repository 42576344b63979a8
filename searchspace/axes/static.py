"""Static weights: learned parameters shaped by the connectivity (a depth-wise conv's K x K filters, Local
MLP's window matrices), the same for every sample and input.

Imports torch, timm and searchspace's spec, cost and axes base only.
"""

from __future__ import annotations

import math

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .. import cost
from ..spec import register_dynamic
from ._base import PROJECTION, DynamicWeight


@register_dynamic
class Static(DynamicWeight):
    name = "static"
    form = "static"
    weight_norms = ("none",)
    options = {"projection": PROJECTION}

    def build(self, mixer: nn.Module) -> None:
        self.build_values(mixer)
        mixer.static_weight = nn.Parameter(trunc_normal_(torch.empty(self.connectivity.static_shape), std=0.02))

    def filters(self, mixer: nn.Module, v: Tensor) -> Tensor:
        return mixer.static_weight

    def cost(self) -> cost.Cost:
        return self.values_cost() + cost.params(math.prod(self.connectivity.static_shape))
