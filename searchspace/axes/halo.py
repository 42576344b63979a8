"""Halo attention (HaloNet): each K x K block of queries attends to its block grown by a halo of h pixels.

Imports torch, timm and searchspace's spec, geometry, cost, layers and axes base only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .. import cost
from ..geometry import blocks
from ..spec import Option, register_connectivity
from ._base import KERNEL, REL_POS, Connectivity


@register_connectivity
class Halo(Connectivity):
    name = "halo"
    options = {"kernel": KERNEL, "halo": Option(int, default=3, ge=1, le=15), "rel_pos": REL_POS}

    @classmethod
    def describe(cls, spec) -> str:
        return f"halo {spec.kernel}+{spec.halo}"

    def __init__(self, spec, dim, feature_size, shifted, value_proj):
        super().__init__(spec, dim, feature_size, shifted, value_proj)
        self.halo = spec.halo
        self.span = self.kernel + 2 * self.halo  # side of the keys' window
        self.n_blocks = blocks(feature_size[0], self.kernel) * blocks(feature_size[1], self.kernel)

    def build(self, mixer: nn.Module) -> None:
        super().build(mixer)
        if self.spec.rel_pos:  # HaloNet: separate height and width tables over the window
            mixer.rel_height = nn.Parameter(trunc_normal_(torch.zeros(2 * self.span - 1, self.head_dim), std=0.02))
            mixer.rel_width = nn.Parameter(trunc_normal_(torch.zeros(2 * self.span - 1, self.head_dim), std=0.02))

    def cost(self) -> cost.Cost:
        total = super().cost()
        if self.spec.rel_pos:
            # q @ table for the height and for the width table, on every padded query pixel
            total += cost.params(2 * (2 * self.span - 1) * self.head_dim)
            total += cost.macs(2 * self.n_blocks * self.taps * self.dim * (2 * self.span - 1))
        return total + cost.macs(2 * self.n_blocks * self.taps * self.span**2 * self.dim)  # q.k and attn.v

    def _attention(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        k, span, g, hd = self.kernel, self.span, self.heads, self.head_dim
        q, key, v = self.dynamic.qkv(mixer, x, gate)
        ph, pw = (-h) % k, (-w) % k
        rows, cols = (h + ph) // k, (w + pw) // k
        q = self._blocks(q, k, 0, ph, pw)  # (B, nB*G, k*k, hd)
        key, v = (self._blocks(t, span, self.halo, ph, pw) for t in (key, v))  # (B, nB*G, span^2, hd)
        geometry = (h, w, rows, cols, x.device, q.dtype)
        if self.spec.rel_pos:
            rows_in, cols_in = self.cached(("halo-in", *geometry), lambda: self._inside(*geometry))
            bias = self._relative_logits(mixer, q.view(b, rows * cols, g, k, k, hd), rows_in, cols_in)
            bias = bias.view(b, rows * cols * g, k * k, span * span)
        else:
            bias = self.cached(("halo-bias", *geometry), lambda: self._outside_bias(*geometry))
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=bias)
        out = out.view(b, rows, cols, g, k, k, hd).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, rows * k, cols * k, c)
        return out[:, :h, :w].contiguous() if ph or pw else out

    kernels = {"attention": _attention}

    def _blocks(self, t: Tensor, side: int, halo: int, ph: int, pw: int) -> Tensor:
        """(B, nB*G, side^2, hd): each K x K block's window of side `side` (grown by `halo`, zero padded) of the
        channels-last map t, per head; strided views of one padded copy, gathered in one copy (no im2col)."""
        b, _, _, c = t.shape
        if halo or ph or pw:
            t = F.pad(t, (0, 0, halo, halo + pw, halo, halo + ph))
        windows = t.unfold(1, side, self.kernel).unfold(2, side, self.kernel)  # (B, rows, cols, C, side, side)
        rows, cols = windows.shape[1:3]
        windows = windows.view(b, rows, cols, self.heads, self.head_dim, side, side).permute(0, 1, 2, 3, 5, 6, 4)
        return windows.reshape(b, rows * cols * self.heads, side * side, self.head_dim)

    def _inside(self, h, w, rows, cols, device, dtype) -> tuple[Tensor, Tensor]:
        """0 where a row (column) of each block's window lies on the map, -inf where not: (1, nB, 1, 1, 1, span)
        each. A window is rows x columns, so its mask is the sum of the two."""

        def bias(blocks: int, side: int) -> Tensor:  # (blocks, span)
            at = torch.arange(blocks, device=device)[:, None] * self.kernel + torch.arange(self.span, device=device) - self.halo
            return torch.zeros(at.shape, device=device, dtype=dtype).masked_fill((at < 0) | (at >= side), float("-inf"))

        shape = (1, rows * cols, 1, 1, 1, self.span)
        rows_in = bias(rows, h)[:, None, :].expand(rows, cols, self.span).reshape(shape)
        cols_in = bias(cols, w)[None, :, :].expand(rows, cols, self.span).reshape(shape)
        return rows_in, cols_in

    def _outside_bias(self, h, w, rows, cols, device, dtype) -> Tensor:
        """(1, nB*G, 1, span^2): -inf on the window positions off the map, broadcast over the batch and queries."""
        row_bias, col_bias = self._inside(h, w, rows, cols, device, dtype)
        bias = (row_bias[..., :, None] + col_bias[..., None, :]).view(1, rows * cols, 1, self.span**2)
        return bias.expand(1, rows * cols, self.heads, self.span**2).reshape(1, rows * cols * self.heads, 1, self.span**2)

    def _relative_logits(self, mixer: nn.Module, qs: Tensor, rows_in: Tensor, cols_in: Tensor) -> Tensor:
        """HaloNet's relative logits q.(r_h[dy] + r_w[dx]) over each block's window, -inf off the map:
        (B, nB, G, qy, qx, span, span) from the block queries qs (B, nB, G, qy, qx, hd)."""
        k, halo, span = self.kernel, self.halo, self.span
        pos = torch.arange(k, device=qs.device)[:, None]
        idx = torch.arange(span, device=qs.device)[None, :] - halo - pos + span - 1  # (k, span)
        along_w = torch.gather(qs @ mixer.rel_width.t(), -1, idx.expand(*qs.shape[:4], k, span))
        along_h = torch.gather(
            qs.transpose(3, 4) @ mixer.rel_height.t(), -1, idx.expand(*qs.shape[:4], k, span)
        ).transpose(3, 4)  # (..., qy, qx, ky)
        # the off-map mask is a row mask plus a column mask: added to the two small terms, not to their sum
        along_h = (along_h + rows_in).contiguous()  # so that the sum comes out contiguous
        return along_h[..., :, None] + (along_w + cols_in)[..., None, :]  # (..., qy, qx, ky, kx)
