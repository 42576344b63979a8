"""Halo attention (HaloNet): each K x K block of queries attends to its block grown by a halo of h pixels.

Imports torch, timm and searchspace's spec, geometry, cost, layers and axes base only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.swin_transformer import window_partition, window_reverse
from torch import Tensor, nn

from .. import cost as C
from ..geometry import blocks
from ..layers import nchw
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

    def cost(self) -> C.Cost:
        total = super().cost()
        if self.spec.rel_pos:
            # q @ table for the height and for the width table, on every padded query pixel
            total += C.params(2 * (2 * self.span - 1) * self.head_dim)
            total += C.macs(2 * self.n_blocks * self.taps * self.dim * (2 * self.span - 1))
        return total + C.macs(2 * self.n_blocks * self.taps * self.span**2 * self.dim)  # q.k and attn.v

    def _attention(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        k, halo, span, g, hd = self.kernel, self.halo, self.span, self.heads, self.head_dim
        q, key, v = self.dynamic.qkv(mixer, x, gate)
        ph, pw = (-h) % k, (-w) % k
        hp, wp = h + ph, w + pw
        q = window_partition(F.pad(q, (0, 0, 0, pw, 0, ph)), (k, k))  # (B*nB, k, k, C)
        n_blocks = q.shape[0] // b
        q = q.view(b, n_blocks, k * k, g, hd).transpose(2, 3)  # (B, nB, G, Nq, hd)
        kv = F.pad(nchw(torch.cat([key, v], -1)), (0, pw, 0, ph))
        kv = F.unfold(kv, span, padding=halo, stride=k).view(b, 2, g, hd, span * span, n_blocks)
        key, v = kv.permute(1, 0, 5, 2, 4, 3).unbind(0)  # (B, nB, G, Nkv, hd)
        inside = self.cached(("halo", h, w, x.device), lambda: self._inside(h, w, hp, wp, x.device))
        logits = torch.zeros((), dtype=q.dtype, device=q.device).expand(1, n_blocks, 1, 1, span * span)
        logits = logits.masked_fill(~inside, float("-inf"))
        if self.spec.rel_pos:
            logits = logits + self._relative_logits(mixer, q)
        q, key, v = (t.reshape(b, n_blocks * g, -1, hd) for t in (q, key, v))
        mask = logits.expand(-1, -1, g, k * k, -1).reshape(logits.shape[0], n_blocks * g, k * k, span * span)
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=mask)
        out = out.view(b, n_blocks, g, k * k, hd).transpose(2, 3).reshape(-1, k, k, c)
        return window_reverse(out, (k, k), hp, wp)[:, :h, :w].contiguous()

    kernels = {"attention": _attention}

    def _inside(self, h, w, hp, wp, device) -> Tensor:
        """(1, nB, 1, 1, span^2) bool: which key positions of each block's window lie on the map."""
        ones = F.pad(torch.ones(1, 1, h, w, device=device), (0, wp - w, 0, hp - h))
        inside = F.unfold(ones, self.span, padding=self.halo, stride=self.kernel)  # (1, span^2, nB)
        return (inside > 0).transpose(1, 2)[:, :, None, None, :]

    def _relative_logits(self, mixer: nn.Module, q: Tensor) -> Tensor:
        """HaloNet's relative logits q.(r_h[dy] + r_w[dx]) over each block's window: (B, nB, G, Nq, span^2)."""
        k, halo, span = self.kernel, self.halo, self.span
        qs = q.reshape(*q.shape[:3], k, k, self.head_dim)
        pos = torch.arange(k, device=q.device)[:, None]
        idx = torch.arange(span, device=q.device)[None, :] - halo - pos + span - 1  # (k, span)
        along_w = torch.gather(qs @ mixer.rel_width.t(), -1, idx.expand(*qs.shape[:4], k, span))
        along_h = torch.gather(
            qs.transpose(3, 4) @ mixer.rel_height.t(), -1, idx.expand(*qs.shape[:4], k, span)
        ).transpose(3, 4)  # (..., qy, qx, ky)
        logits = along_h[..., :, None] + along_w[..., None, :]  # (..., qy, qx, ky, kx)
        return logits.reshape(*q.shape[:3], k * k, span * span)
