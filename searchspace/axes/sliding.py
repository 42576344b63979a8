"""A dense K x K neighbourhood centred on each pixel, like a convolution: depth-wise conv (static), dynamic
depth-wise conv (a kernel per sample), involution and ELSA (a filter per pixel), neighbourhood attention.

Imports torch, timm and searchspace's spec, cost, kernels, layers and axes base only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .. import cost
from ..kernels import neighbourhood_mask, sliding_aggregate, sliding_logits
from ..layers import nchw, nhwc
from ..spec import register_connectivity
from ._base import KERNEL, REL_POS, Connectivity

# Where one kernel beats another, measured on CPU at Swin-T's stage shapes (benchmarks/kernels.py):
# values per sample from which one depth-wise conv per sample beats folding the batch into channels
PER_SAMPLE_CONVS = 1 << 15


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

    def cost(self) -> cost.Cost:
        total = super().cost()
        if self.dynamic.form in ("static", "per_sample"):
            total += cost.params(self.dim)
        if self.spec.rel_pos:
            total += cost.params(self.heads * self.taps)
        products = 2 if self.dynamic.form == "attention" else 1  # q.k and attn.v, or one weighted sum
        return total + cost.macs(self.pixels * self.taps * self.dim * products)

    # --- kernels ------------------------------------------------------------------------------------------
    def _conv(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """conv2d(groups=C): one learned K x K filter per group, repeated over its channels."""
        v = self.dynamic.values(mixer, x, gate)
        c, k = self.dim, self.kernel
        filters = mixer.weight_norm(self.dynamic.filters(mixer, v), -1)
        if self.heads != c:
            filters = filters.repeat_interleave(c // self.heads, 0)
        return nhwc(F.conv2d(nchw(v), filters.view(c, 1, k, k), mixer.static_bias, padding=k // 2, groups=c))

    def _per_sample_conv(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """Every sample its own filters: one depth-wise conv per sample on the channels-last map where a sample
        holds many values, else one grouped conv over the batch folded into channels (one call, and the faster
        backward on the proxy's small maps)."""
        v = self.dynamic.values(mixer, x, gate)
        b, h, w, c = v.shape
        k = self.kernel
        filters = mixer.weight_norm(self.dynamic.filters(mixer, v), 2)
        filters = filters.repeat_interleave(c // self.heads, 1).reshape(b, c, 1, k, k)
        if b == 1 or h * w * c >= PER_SAMPLE_CONVS:
            # v[i : i + 1] keeps the channels-last strides MKL-DNN's fast path looks for; the folded reshape of
            # one sample does not (3-10x slower at 56x56)
            out = [F.conv2d(nchw(v[i : i + 1]), filters[i], mixer.static_bias, padding=k // 2, groups=c) for i in range(b)]
            return nhwc(out[0] if b == 1 else torch.cat(out))
        out = F.conv2d(nchw(v).reshape(1, b * c, h, w), filters.view(b * c, 1, k, k), mixer.static_bias.repeat(b),
                       padding=k // 2, groups=b * c)
        return nhwc(out.view(b, c, h, w))

    def _per_pixel(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """The memory-bounded sliding kernel with each pixel's filter (involution, ELSA)."""
        weights, v = self.dynamic.pixel_weights(mixer, x, gate)
        v = nchw(v).contiguous()
        out = sliding_aggregate(v, mixer.weight_norm(weights, 2).contiguous(), self.kernel)
        ghost = self.dynamic.ghost(mixer, v)
        return nhwc(out if ghost is None else out + ghost)

    def _attention(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """Neighbourhood attention: logits over each pixel's neighbours inside the map, then the sliding kernel.
        A map no larger than one neighbourhood (7x7 at K = 7) takes one fused attention over the whole map
        instead, with the neighbourhood as its mask and K x K keys per query like the sliding kernel (the map's
        pixels, then masked padding): the same result and MACs, 16-25x faster at 7x7 than K x K passes."""
        b, h, w, c = x.shape
        k, g, hd = self.kernel, self.heads, self.head_dim
        q, key, v = self.dynamic.qkv(mixer, x, gate)
        if h * w <= self.taps:
            offset, outside = self.cached(("dense", h, w, x.device), lambda: self._neighbours(h, w, x.device))
            bias = outside + mixer.rel_table[:, offset] if self.spec.rel_pos else outside
            q, key, v = (t.reshape(b, h * w, g, hd).transpose(1, 2) for t in (q, key, v))
            key, v = (F.pad(t, (0, 0, 0, self.taps - h * w)) for t in (key, v))
            out = F.scaled_dot_product_attention(q, key, v, attn_mask=bias.to(q.dtype))
            return out.transpose(1, 2).reshape(b, h, w, c)
        q, key, v = (nchw(t).contiguous() for t in (q, key, v))
        logits = sliding_logits(q * hd**-0.5, key, k, g)
        if self.spec.rel_pos:
            logits = logits + mixer.rel_table.view(1, g, k * k, 1, 1)
        mask = self.cached(("nbr", h, w, x.device, x.dtype), lambda: neighbourhood_mask(k, h, w, x.device, x.dtype))
        return nhwc(sliding_aggregate(v, (logits + mask).softmax(2).contiguous(), k))

    def _neighbours(self, h: int, w: int, device) -> tuple[Tensor, Tensor]:
        """For each pixel i of an h x w map and key j (the map's N pixels, then K*K - N of padding), (N, K*K)
        each: j's offset from i as an index into the taps, and 0 where j is in i's neighbourhood, -inf where not."""
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        p, pad = self.kernel // 2, self.taps - h * w
        dy = ys.reshape(1, -1) - ys.reshape(-1, 1) + p
        dx = xs.reshape(1, -1) - xs.reshape(-1, 1) + p
        inside = F.pad((dy >= 0) & (dy < self.kernel) & (dx >= 0) & (dx < self.kernel), (0, pad))
        offset = F.pad((dy * self.kernel + dx).clamp(0, self.taps - 1), (0, pad))
        return offset, torch.zeros(inside.shape, device=device).masked_fill(~inside, float("-inf"))

    kernels = {"static": _conv, "per_sample": _per_sample_conv, "per_pixel": _per_pixel, "attention": _attention}
