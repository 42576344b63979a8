"""Global attention over all positions, keys and values optionally from a map reduced by R (PVT's
spatial-reduction attention).

Imports torch and searchspace's spec, geometry, cost, layers and axes base only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .. import cost
from ..geometry import reduction_at
from ..layers import nchw, nhwc
from ..spec import Option, register_connectivity
from ._base import Connectivity, gated


@register_connectivity
class Global(Connectivity):
    name = "global"
    options = {"reduction": Option(int, default=1, ge=1, le=32)}
    why_not = {
        "static": "static weights over all positions tie the network to one input size",
        "per_sample": "one kernel over all positions is global pooling, not a mixer",
        "per_pixel": "per-position weights over all positions tie the network to one input size",
    }

    @classmethod
    def describe(cls, spec) -> str:
        return "global" + (f" /{spec.reduction}" if spec.reduction > 1 else "")

    def __init__(self, spec, dim, feature_size, shifted, value_proj):
        super().__init__(spec, dim, feature_size, shifted, value_proj)
        self.reduction = reduction_at(spec, feature_size)
        self.keys = (feature_size[0] // self.reduction) * (feature_size[1] // self.reduction)

    def build(self, mixer: nn.Module) -> None:
        if self.reduction == 1:
            super().build(mixer)
        else:  # PVT: queries from every pixel, keys and values from a map reduced by an R x R stride-R conv
            d, r = self.dim, self.reduction
            mixer.q = nn.Linear(d, d)
            mixer.sr = nn.Conv2d(d, d, r, r)
            mixer.sr_norm = nn.LayerNorm(d)
            mixer.kv = nn.Linear(d, 2 * d)

    def cost(self) -> cost.Cost:
        d, r = self.dim, self.reduction
        if r == 1:
            total = super().cost()
        else:
            total = cost.linear(d, d, self.pixels) + cost.conv(d, d, r, self.keys) + cost.norm(d) + cost.linear(d, 2 * d, self.keys)
        return total + cost.macs(2 * self.pixels * self.keys * d)  # q.k and attn.v

    def _attention(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        if self.reduction > 1:
            q = mixer.q(x)
            key, v = mixer.kv(mixer.sr_norm(nhwc(mixer.sr(nchw(x))))).split([c, c], -1)
            v = gated(v, gate)
        else:
            q, key, v = self.dynamic.qkv(mixer, x, gate)
        q, key, v = (t.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2) for t in (q, key, v))
        out = F.scaled_dot_product_attention(q, key, v)
        return out.transpose(1, 2).reshape(b, h, w, c)

    kernels = {"attention": _attention}
