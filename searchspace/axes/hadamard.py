"""Hadamard attention (ELSA): each pixel's K x K filters generated from q (.) k by a grouped conv and a 1x1
conv, with an optional ghost head (a static depth-wise filter added on a sliding neighbourhood).

Imports torch, timm and searchspace's spec, cost, layers and axes base only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .. import cost
from ..layers import nchw
from ..spec import Option, register_dynamic
from ._base import DynamicWeight, gated


def hadamard_width(dim: int, group_width: int) -> int:
    """ELSA's query/key width: 2C/3 rounded up to a multiple of the generator's group width."""
    return group_width * math.ceil(2 * dim / 3 / group_width)


@register_dynamic
class Hadamard(DynamicWeight):
    name = "hadamard"
    form = "per_pixel"
    weight_norms = ("softmax", "filter_norm")
    options = {
        "ghost_head": Option(bool, default=False, only=("sliding",), words={True: "ghost head"}),
        # the generator conv has d / group_width groups (the authors' default 8; their ELSA-Swin-T passes 4)
        "group_width": Option(int, default=4, ge=1, le=64, description="channels per group of ELSA's filter generator"),
    }
    why_not = {"global": "Hadamard attention generates K x K local filters only"}

    def __init__(self, spec, dim, connectivity, value_proj):
        super().__init__(spec, dim, connectivity, value_proj)
        self.qk_dim = hadamard_width(dim, spec.group_width)
        self.generator_kernel = connectivity.kernel | 1  # a clamped window of even side gets the next odd one

    def build(self, mixer: nn.Module) -> None:
        d, gk, k = self.qk_dim, self.generator_kernel, self.connectivity.kernel
        mixer.qkv = nn.Linear(self.dim, 2 * d + self.dim)
        mixer.generator = nn.Sequential(
            nn.Conv2d(d, d, gk, padding=gk // 2, groups=d // self.spec.group_width),
            nn.GELU(),
            nn.Conv2d(d, self.heads * self.connectivity.taps, 1),
        )
        if self.spec.ghost_head:
            mixer.ghost = nn.Parameter(trunc_normal_(torch.empty(self.dim, 1, k, k), std=0.02))

    def pixel_weights(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor]:
        b, h, w, _ = x.shape
        q, k, v = mixer.qkv(x).split([self.qk_dim, self.qk_dim, self.dim], -1)
        return mixer.generator(nchw(q * k)).reshape(b, self.heads, -1, h, w), gated(v, gate)

    def ghost(self, mixer: nn.Module, v: Tensor) -> Tensor | None:
        k = self.connectivity.kernel
        return F.conv2d(v, mixer.ghost, padding=k // 2, groups=self.dim) if self.spec.ghost_head else None

    def cost(self) -> cost.Cost:
        d, k, pixels = self.qk_dim, self.connectivity.kernel, self.connectivity.pixels
        total = cost.linear(self.dim, 2 * d + self.dim, pixels)
        total += cost.conv(d, d, self.generator_kernel, pixels, groups=d // self.spec.group_width)
        total += cost.conv(d, self.heads * self.connectivity.taps, 1, pixels)
        if self.spec.ghost_head:
            total += cost.conv(self.dim, self.dim, k, pixels, groups=self.dim, bias=False)
        return total
