"""A dense K x K neighbourhood centred on each pixel, like a convolution: depth-wise conv (static), dynamic
depth-wise conv (a kernel per sample), involution and ELSA (a filter per pixel), neighbourhood attention.

Imports torch, timm and searchspace's spec, cost, kernels, layers and axes base only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .. import cost as C
from ..kernels import neighbourhood_mask, sliding_aggregate, sliding_logits
from ..layers import nchw, nhwc
from ..spec import register_connectivity
from ._base import KERNEL, REL_POS, Connectivity


@register_connectivity
class Sliding(Connectivity):
    name = "sliding"
    options = {"kernel": KERNEL, "rel_pos": REL_POS}
    centred = True

    def build(self, mixer: nn.Module) -> None:
        super().build(mixer)
        if self.dynamic.form in ("static", "per_sample"):  # a convolution's bias
            mixer.static_bias = nn.Parameter(torch.zeros(self.dim))
        if self.spec.rel_pos:  # neighbourhood attention: a bias per head and offset
            mixer.rel_table = nn.Parameter(trunc_normal_(torch.zeros(self.heads, self.taps), std=0.02))

    def cost(self) -> C.Cost:
        total = super().cost()
        if self.dynamic.form in ("static", "per_sample"):
            total += C.params(self.dim)
        if self.spec.rel_pos:
            total += C.params(self.heads * self.taps)
        products = 2 if self.dynamic.form == "attention" else 1  # q.k and attn.v, or one weighted sum
        return total + C.macs(self.pixels * self.taps * self.dim * products)

    # --- kernels ------------------------------------------------------------------------------------------
    def _conv(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """conv2d(groups=C): one learned K x K filter per group, repeated over its channels."""
        v = self.dynamic.values(mixer, x, gate)
        c, k = self.dim, self.kernel
        filters = mixer.weight_norm(self.dynamic.filters(mixer, v), -1)
        filters = filters.repeat_interleave(c // self.heads, 0).view(c, 1, k, k)
        return nhwc(F.conv2d(nchw(v), filters, mixer.static_bias, padding=k // 2, groups=c))

    def _per_sample_conv(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """One grouped conv over the batch folded into channels: every sample gets its own filters."""
        v = self.dynamic.values(mixer, x, gate)
        b, h, w, c = v.shape
        k = self.kernel
        filters = mixer.weight_norm(self.dynamic.filters(mixer, v), 2)
        filters = filters.repeat_interleave(c // self.heads, 1).reshape(b * c, 1, k, k)
        bias = mixer.static_bias.repeat(b)
        out = F.conv2d(nchw(v).reshape(1, b * c, h, w), filters, bias, padding=k // 2, groups=b * c)
        return nhwc(out.view(b, c, h, w))

    def _per_pixel(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """The memory-bounded sliding kernel with each pixel's filter (involution, ELSA)."""
        weights, v = self.dynamic.pixel_weights(mixer, x, gate)
        v = nchw(v).contiguous()
        out = sliding_aggregate(v, mixer.weight_norm(weights, 2).contiguous(), self.kernel)
        ghost = self.dynamic.ghost(mixer, v)
        return nhwc(out if ghost is None else out + ghost)

    def _attention(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """Neighbourhood attention: logits over each pixel's neighbours inside the map, then the sliding kernel."""
        _, h, w, _ = x.shape
        k = self.kernel
        q, key, v = (nchw(t).contiguous() for t in self.dynamic.qkv(mixer, x, gate))
        logits = sliding_logits(q * self.head_dim**-0.5, key, k, self.heads)
        if self.spec.rel_pos:
            logits = logits + mixer.rel_table.view(1, self.heads, k * k, 1, 1)
        mask = self.cached(("nbr", h, w, x.device, x.dtype), lambda: neighbourhood_mask(k, h, w, x.device, x.dtype))
        return nhwc(sliding_aggregate(v, (logits + mask).softmax(2).contiguous(), k))

    kernels = {"static": _conv, "per_sample": _per_sample_conv, "per_pixel": _per_pixel, "attention": _attention}
