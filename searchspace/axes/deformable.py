"""Deformable sampling (DCNv3, InternImage): K x K points around each pixel, moved by offsets predicted per
position and weighted by per-point weights predicted with them, sampled bilinearly.

Imports torch and searchspace's spec, cost, layers and axes base only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import cost
from ..layers import nchw, nhwc
from ..spec import register_connectivity
from ._base import KERNEL, Connectivity

_SAMPLED_ELEMENTS = 1 << 24  # sampled values (64 MB in fp32) held at once


@register_connectivity
class Deformable(Connectivity):
    """DCNv3 predicts its points' weights together with their offsets, so it takes over the building and
    cost of the inhomogeneous weights (the dynamic weight still makes the values)."""

    name = "deformable"
    options = {"kernel": KERNEL}
    why_not = {"static": "DCNv3 predicts its sampling weights; static deformable weights are not a seed point"}
    centred = True

    def build(self, mixer: nn.Module) -> None:
        d, k, points = self.dim, self.kernel, self.heads * self.taps
        self.dynamic.build_values(mixer)
        mixer.context = nn.Conv2d(d, d, k, padding=k // 2, groups=d)
        mixer.context_norm = nn.LayerNorm(d)
        mixer.offset = nn.Linear(d, points * 2)
        mixer.point_weight = nn.Linear(d, points)

    def init_weights(self, mixer: nn.Module) -> None:
        # DCNv3 starts from the regular grid with equal weights on its points (zero offsets and logits)
        for layer in (mixer.offset, mixer.point_weight):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def cost(self) -> cost.Cost:
        d, pixels, points = self.dim, self.pixels, self.heads * self.taps
        total = self.dynamic.values_cost() + cost.conv(d, d, self.kernel, pixels, groups=d) + cost.norm(d)
        total += cost.linear(d, points * 2, pixels) + cost.linear(d, points, pixels)
        return total + cost.macs(pixels * self.taps * d)  # one multiply-add per sampled value and channel

    def _sample(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        k, g = self.kernel, self.heads
        v = nchw(self.dynamic.values(mixer, x, gate)).reshape(b * g, c // g, h, w)
        context = F.gelu(mixer.context_norm(nhwc(mixer.context(nchw(x)))))
        offsets = mixer.offset(context).view(b, h, w, g, k * k, 2)
        weights = mixer.weight_norm(mixer.point_weight(context).view(b, h, w, g, k * k), -1)
        base = self.cached(("grid", h, w, x.device, x.dtype), lambda: self._base_grid(h, w, x.device, x.dtype))
        scale = torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=x.dtype)
        # sampling positions in grid_sample's [-1, 1] coordinates, one (B*G, H, W, 2) grid per point
        grids = (base + offsets * scale).permute(0, 3, 1, 4, 2, 5).reshape(b * g, h, k * k * w, 2)
        weights = weights.permute(0, 3, 1, 4, 2).reshape(b * g, 1, h, k * k * w)
        # Points are sampled in chunks side by side along the width: one grid_sample call per chunk, and
        # at most _SAMPLED_ELEMENTS sampled values alive at once (the full K*K stack is K*K times the input).
        chunk = max(1, min(k * k, _SAMPLED_ELEMENTS // max(1, v.numel())))
        out = None
        for first in range(0, k * k, chunk):
            cols = slice(first * w, min(k * k, first + chunk) * w)
            sampled = F.grid_sample(v, grids[:, :, cols], mode="bilinear", padding_mode="zeros", align_corners=False)
            term = (sampled * weights[..., cols]).view(b * g, c // g, h, -1, w).sum(3)
            out = term if out is None else out + term
        return nhwc(out.view(b, c, h, w))

    kernels = {"inhomogeneous": _sample}

    def _base_grid(self, h: int, w: int, device, dtype) -> Tensor:
        """(1, H, W, 1, K*K, 2): each pixel's regular K x K grid in normalised (x, y) coordinates."""
        k = self.kernel
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        dy, dx = torch.meshgrid(torch.arange(k, device=device), torch.arange(k, device=device), indexing="ij")
        px = xs[..., None] + (dx.flatten() - k // 2)
        py = ys[..., None] + (dy.flatten() - k // 2)
        grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], -1)
        return grid.to(dtype)[None, :, :, None]
