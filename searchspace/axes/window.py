"""Non-overlapping K x K windows, shifted by K/2 in alternate blocks (Swin): attention, Local MLP's learned
K^2 x K^2 matrices, or a predicted filter per pixel over its window.

Imports torch, timm and searchspace's spec, geometry, cost, layers and axes base only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.swin_transformer import window_partition
from torch import Tensor, nn

from .. import cost
from ..geometry import blocks
from ..layers import nhwc
from ..spec import Option, register_connectivity
from ._base import KERNEL, REL_POS, Connectivity


@register_connectivity
class Window(Connectivity):
    name = "window"
    options = {
        "kernel": KERNEL,
        "shift": Option(bool, default=False),
        "shared_positions": Option(bool, default=True, only=("static",), words={False: "per-window weights"}),
        "rel_pos": REL_POS,
    }
    why_not = {"per_sample": "a per-sample kernel shared by all positions needs a sliding neighbourhood"}

    @classmethod
    def describe(cls, spec) -> str:
        return f"window {spec.kernel}" + (" shifted" if spec.shift else "")

    def __init__(self, spec, dim, feature_size, shifted, value_proj):
        super().__init__(spec, dim, feature_size, shifted, value_proj)
        self.windows = blocks(feature_size[0], self.kernel) * blocks(feature_size[1], self.kernel)

    @property
    def static_shape(self) -> tuple[int, ...]:
        """A K^2 x K^2 matrix per head, per window unless shared across positions (Local MLP)."""
        banks = 1 if self.spec.shared_positions else self.windows
        return (banks, self.heads, self.taps, self.taps)

    def input_tokens(self) -> int:
        # attention's q, k, v are made per window, so padded pixels count
        return self.windows * self.taps if self.dynamic.form == "attention" else self.pixels

    def build(self, mixer: nn.Module) -> None:
        super().build(mixer)
        if self.spec.rel_pos:
            k = self.kernel
            mixer.rel_table = nn.Parameter(trunc_normal_(torch.zeros((2 * k - 1) ** 2, self.heads), std=0.02))
            mixer.register_buffer("rel_index", _relative_index(k), persistent=False)

    def cost(self) -> cost.Cost:
        total = super().cost()
        if self.spec.rel_pos:
            total += cost.params((2 * self.kernel - 1) ** 2 * self.heads)
        products = 2 if self.dynamic.form == "attention" else 1  # q.k and attn.v, or one weighted sum
        return total + cost.macs(self.windows * self.taps * self.taps * self.dim * products)

    # --- kernels ------------------------------------------------------------------------------------------
    def _attention(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """Fused scaled-dot-product attention with every window's heads side by side."""
        b, h, w, _ = x.shape
        g, hd, n = self.heads, self.head_dim, self.taps
        windows, shift_mask = self._partition(x)  # q, k, v are made after: C channels move through roll, not 3C
        nw = windows.shape[1]
        q, key, v = self.dynamic.qkv(mixer, windows, gate)
        bias = self._bias(mixer, nw, shift_mask, q.dtype)
        q, key, v = (t.view(b, nw, n, g, hd).transpose(2, 3).reshape(b, nw * g, n, hd) for t in (q, key, v))
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=bias).view(b, nw, g, n, hd)
        return self._merge(out, h, w)

    def _static(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """Local MLP: one learned matrix per head (and window, unless shared) mixes each window's pixels."""
        _, h, w, _ = x.shape
        v = self.dynamic.values(mixer, x, gate)
        windows, shift_mask = self._partition(v)
        rows, cols = blocks(h, self.kernel), blocks(w, self.kernel)
        weights = self._banks(self.dynamic.filters(mixer, v), rows, cols)  # (nW | 1, G, N, N)
        return self._merge(self._weighted(mixer, weights, windows, shift_mask), h, w)

    def _per_pixel(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """Each pixel's predicted filter over the N members of its window."""
        b, h, w, c = x.shape
        weights, v = self.dynamic.pixel_weights(mixer, x, gate)
        windows, shift_mask = self._partition(torch.cat([v, nhwc(weights.flatten(1, 2))], -1))
        n = self.taps
        weights = windows[..., c:].reshape(b, windows.shape[1], n, self.heads, n).transpose(2, 3)
        return self._merge(self._weighted(mixer, weights, windows[..., :c], shift_mask), h, w)

    kernels = {"attention": _attention, "static": _static, "per_pixel": _per_pixel}

    # --- helpers ------------------------------------------------------------------------------------------
    def _partition(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, nW, N, C') windows of the padded, shifted map, and the (nW, N, N) mask of pairs a shift puts
        in one window from different regions of the map."""
        b, h, w, _ = pixels.shape
        k, s = self.kernel, self.shift
        ph, pw = (-h) % k, (-w) % k
        if ph or pw:
            pixels = F.pad(pixels, (0, 0, 0, pw, 0, ph))
        if s:
            pixels = torch.roll(pixels, (-s, -s), (1, 2))
        windows = window_partition(pixels, (k, k)).view(b, -1, k * k, pixels.shape[-1])
        hp, wp, device = h + ph, w + pw, pixels.device
        shift_mask = self.cached(("shift", hp, wp, device), lambda: _shift_mask(hp, wp, k, s, device)) if s else None
        return windows, shift_mask

    def _merge(self, out: Tensor, h: int, w: int) -> Tensor:
        """(B, nW, G, N, hd) window outputs back to the (B, H, W, C) map, in one copy."""
        b, k, s = out.shape[0], self.kernel, self.shift
        rows, cols = blocks(h, k), blocks(w, k)
        out = out.view(b, rows, cols, self.heads, k, k, self.head_dim).permute(0, 1, 4, 2, 5, 3, 6)
        out = out.reshape(b, rows * k, cols * k, self.dim)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        return out[:, :h, :w].contiguous() if (rows * k, cols * k) != (h, w) else out

    def _weighted(self, mixer: nn.Module, weights: Tensor, values: Tensor, shift_mask: Tensor | None) -> Tensor:
        b, nw = values.shape[:2]
        v = values.reshape(b, nw, self.taps, self.heads, self.head_dim).transpose(2, 3)
        outside = None if shift_mask is None else shift_mask.unsqueeze(1)  # pairs across regions (nW, 1, N, N)
        weights = mixer.weight_norm(weights, -1, outside)
        if weights.dim() == 5:  # per pixel, so per sample
            return weights @ v
        # shared by the batch: the batch joins the values' columns rather than the product's batch, where the
        # weights would be copied for every sample (2-5x faster at a batch of 32)
        g, n, hd = v.shape[2:]
        out = weights @ v.permute(1, 2, 3, 0, 4).reshape(nw, g, n, b * hd)
        return out.view(nw, g, n, b, hd).permute(3, 0, 1, 2, 4)

    def _bias(self, mixer: nn.Module, n_windows: int, shift_mask: Tensor | None, dtype) -> Tensor | None:
        """Relative-position bias and shift mask as one (1, nW*G, N, N) attention bias, broadcast over the batch."""
        g, n = self.heads, self.taps
        bias = None
        if self.spec.rel_pos:
            bias = mixer.rel_table[mixer.rel_index.view(-1)].view(n, n, g).permute(2, 0, 1).to(dtype)
        if shift_mask is not None:
            masked = torch.zeros(shift_mask.shape, dtype=dtype, device=shift_mask.device)
            masked = masked.masked_fill(shift_mask, float("-inf")).unsqueeze(1)  # (nW, 1, N, N)
            bias = masked if bias is None else masked + bias.unsqueeze(0)
        elif bias is not None:
            bias = bias.unsqueeze(0)
        return None if bias is None else bias.expand(n_windows, g, n, n).reshape(1, n_windows * g, n, n)

    def _banks(self, bank: Tensor, rows: int, cols: int) -> Tensor:
        if bank.shape[0] == 1 or bank.shape[0] == rows * cols:
            return bank
        # per-window weights built for another map: resample the window grid (nearest), like timm's pos-embed
        built = (blocks(self.feature_size[0], self.kernel), blocks(self.feature_size[1], self.kernel))
        grid = bank.reshape(*built, -1).permute(2, 0, 1).unsqueeze(0)
        grid = F.interpolate(grid, size=(rows, cols), mode="nearest")
        return grid[0].permute(1, 2, 0).reshape(rows * cols, *bank.shape[1:])


def _shift_mask(height: int, width: int, kernel: int, shift: int, device) -> Tensor:
    """(nW, N, N) bool: True where a shifted window pairs pixels from different regions (Swin)."""
    regions = torch.zeros(1, height, width, 1, device=device)
    cuts = (slice(0, -kernel), slice(-kernel, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for ws in cuts:
            regions[:, hs, ws, :] = label
            label += 1
    windows = window_partition(regions, (kernel, kernel)).view(-1, kernel * kernel)
    return windows.unsqueeze(1) != windows.unsqueeze(2)


def _relative_index(kernel: int) -> Tensor:
    """(N, N) index into a (2K-1)^2 table of relative offsets inside a K x K window."""
    coords = torch.stack(torch.meshgrid(torch.arange(kernel), torch.arange(kernel), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]) + kernel - 1
    return rel[0] * (2 * kernel - 1) + rel[1]
