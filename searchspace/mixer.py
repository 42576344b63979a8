"""One spatial token mixer for every point of DESIGN §1.2: y_i = W_out sum_{j in S(i)} w_ij (.) (W_in x_j).

The three axes (connectivity, weight sharing, dynamic weight) and the sizes are constructor
arguments (a MixerSpec). Each point is dispatched once, in __init__, to the fastest correct kernel:
`conv2d(groups=C)` for static and homogeneous sliding weights, fused scaled-dot-product attention
for window / halo / global attention, the memory-bounded sliding kernels (`kernels.py`) for
per-pixel sliding weights, `grid_sample` for deformable points. `mixer_cost` beside the class
states the same module's parameters and MACs in closed form. Tensors are channels-last.
Imports torch, timm and searchspace's spec, cost, layers and kernels only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.swin_transformer import window_partition, window_reverse
from torch import Tensor, nn

from . import cost as C
from .geometry import blocks, local_geometry, reduction_at
from .kernels import neighbourhood_mask, sliding_aggregate, sliding_logits
from .layers import LastDimBatchNorm, nchw, nhwc, projection, projection_cost
from .spec import MixerSpec


def hadamard_width(dim: int, group_width: int) -> int:
    """ELSA's query/key width: 2C/3 rounded up to a multiple of the generator's group width."""
    return group_width * math.ceil(2 * dim / 3 / group_width)


_SAMPLED_ELEMENTS = 1 << 24  # deformable sampling: values (64 MB in fp32) held at once


def _odd(kernel: int) -> int:
    """A 'same' convolution needs an odd kernel; a clamped window of even side gets the next odd one."""
    return kernel | 1


def _normalise(weights: Tensor, kind: str, dim: int, outside: Tensor | None = None) -> Tensor:
    """Normalise each filter along `dim` over its members only: `outside` (True = not a member, e.g. the
    other region of a shifted window) is left out of the softmax / mean / norm and zeroed."""
    if kind == "softmax":
        return (weights if outside is None else weights.masked_fill(outside, float("-inf"))).softmax(dim)
    if kind == "filter_norm":
        # DDF's filter normalisation: zero mean, unit norm over the K*K taps of each filter.
        if outside is None:
            centred = weights - weights.mean(dim, keepdim=True)
        else:
            inside = (~outside).to(weights.dtype)
            mean = (weights * inside).sum(dim, keepdim=True) / inside.sum(dim, keepdim=True)
            centred = (weights - mean) * inside
        return centred / (centred.norm(dim=dim, keepdim=True) + 1e-5)
    return weights if outside is None else weights.masked_fill(outside, 0.0)


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


class TokenMixer(nn.Module):
    """A spatial token mixer; channels-last in and out.

    dim: the channels it mixes. feature_size: the map it is built for (windows clamp to it).
    shifted: this block is one of the shifted ones (Swin alternates). value_proj: apply W_in
    (a parallel branch may already have projected its input). out_dim: channels of W_out, or
    None for no output projection.
    """

    def __init__(
        self,
        spec: MixerSpec,
        dim: int,
        feature_size: tuple[int, int],
        *,
        shifted: bool = False,
        value_proj: bool = True,
        out_dim: int | None = -1,
    ):
        super().__init__()
        self.spec = spec
        self.dim, self.heads = dim, spec.heads
        self.head_dim = dim // spec.heads
        self.kernel, self.shift = local_geometry(spec, feature_size, shifted)
        self.feature_size = feature_size
        self.weight_norm = spec.weight_norm
        self._masks: dict = {}
        connectivity, dynamic = spec.connectivity, spec.dynamic
        k2 = self.kernel * self.kernel
        g = self.heads

        # W_in: queries/keys/values for attention-like weights, values otherwise.
        if dynamic == "attention":
            self.reduction = reduction_at(spec, feature_size) if connectivity == "global" else 1
            if self.reduction > 1:  # PVT's spatial-reduction attention
                self.q = nn.Linear(dim, dim)
                self.sr = nn.Conv2d(dim, dim, self.reduction, self.reduction)
                self.sr_norm = nn.LayerNorm(dim)
                self.kv = nn.Linear(dim, 2 * dim)
            else:
                self.qkv = nn.Linear(dim, 3 * dim)
        elif dynamic == "hadamard":
            self.qk_dim = hadamard_width(dim, spec.group_width)
            self.qkv = nn.Linear(dim, 2 * self.qk_dim + dim)
        else:
            self.value = projection(spec.projection, dim, dim, act=True) if value_proj else nn.Identity()

        # Where the weights come from.
        if dynamic == "static":
            if connectivity == "sliding":
                self.static_weight = nn.Parameter(trunc_normal_(torch.empty(g, k2), std=0.02))
                self.static_bias = nn.Parameter(torch.zeros(dim))
            else:  # window: a K^2 x K^2 matrix per head, per window unless shared across positions
                banks = 1 if spec.shared_positions else self._window_count(feature_size)
                self.static_weight = nn.Parameter(trunc_normal_(torch.empty(banks, g, k2, k2), std=0.02))
        elif dynamic == "homogeneous":  # D-DW-Conv: GAP -> reduce -> BN/ReLU -> one kernel per group
            hidden = max(1, dim // 4)
            self.generator = nn.Sequential(
                nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, g * k2)
            )
            self.static_bias = nn.Parameter(torch.zeros(dim))
        elif dynamic == "inhomogeneous" and connectivity == "deformable":  # DCNv3
            self.context = nn.Conv2d(dim, dim, self.kernel, padding=self.kernel // 2, groups=dim)
            self.context_norm = nn.LayerNorm(dim)
            self.offset = nn.Linear(dim, g * k2 * 2)
            self.point_weight = nn.Linear(dim, g * k2)
        elif dynamic == "inhomogeneous":  # involution / I-D-DW-Conv: each pixel predicts its filter
            hidden = max(1, dim // 4)
            self.generator = nn.Sequential(
                nn.Linear(dim, hidden, bias=False), LastDimBatchNorm(hidden), nn.ReLU(), nn.Linear(hidden, g * k2)
            )
        elif dynamic == "hadamard":  # ELSA: filters from q (.) k through a grouped conv and a 1x1 conv
            d, gk = self.qk_dim, _odd(self.kernel)
            self.generator = nn.Sequential(
                nn.Conv2d(d, d, gk, padding=gk // 2, groups=d // spec.group_width),
                nn.GELU(),
                nn.Conv2d(d, g * k2, 1),
            )
            if spec.ghost_head:
                self.ghost = nn.Parameter(trunc_normal_(torch.empty(dim, 1, self.kernel, self.kernel), std=0.02))
        if spec.rel_pos:
            if connectivity == "window":
                self.rel_table = nn.Parameter(trunc_normal_(torch.zeros((2 * self.kernel - 1) ** 2, g), std=0.02))
                self.register_buffer("rel_index", _relative_index(self.kernel), persistent=False)
            elif connectivity == "halo":  # HaloNet: separate height and width tables over the window
                span = 2 * (self.kernel + 2 * spec.halo) - 1
                self.rel_height = nn.Parameter(trunc_normal_(torch.zeros(span, self.head_dim), std=0.02))
                self.rel_width = nn.Parameter(trunc_normal_(torch.zeros(span, self.head_dim), std=0.02))
            else:  # sliding (neighbourhood attention): a bias per head and offset
                self.rel_table = nn.Parameter(trunc_normal_(torch.zeros(g, k2), std=0.02))

        # After the aggregation: DWNet's BN + ReLU, then W_out.
        conv_bn = spec.projection == "conv_bn"
        self.post = nn.Sequential(LastDimBatchNorm(dim), nn.ReLU()) if conv_bn else nn.Identity()
        out_dim = dim if out_dim == -1 else out_dim
        self.proj = nn.Identity() if out_dim is None else projection(spec.projection or "linear", dim, out_dim, act=False)

        self._aggregate = {
            "window": self._window,
            "halo": self._halo,
            "global": self._global,
            "deformable": self._deformable,
            "sliding": {
                "static": self._sliding_static,
                "homogeneous": self._sliding_homogeneous,
            }.get(dynamic, self._sliding_weighted),
        }[connectivity]
        self.init_weights()

    def init_weights(self) -> None:
        """Where the seeds' code starts differently from the network's truncated-normal linears (the network
        calls this after its own init): D-DW-Conv's and I-D-DW-Conv's generators are 1x1 convolutions with
        PyTorch's default init (kaiming-uniform weights and biases, about 6x the scale of std 0.02), and
        DCNv3 starts from the regular grid with equal weights on its points (zero offsets and logits)."""
        if self.spec.dynamic in ("homogeneous", "inhomogeneous") and hasattr(self, "generator"):
            for layer in self.generator:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        for layer in (getattr(self, "offset", None), getattr(self, "point_weight", None)):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _window_count(self, feature_size) -> int:
        return blocks(feature_size[0], self.kernel) * blocks(feature_size[1], self.kernel)

    # --- the public steps ----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.mix(x))

    def mix(self, x: Tensor, value_gate: Tensor | None = None) -> Tensor:
        """Aggregate (before W_out); `value_gate` (B, C) scales the values (MixFormer's channel interaction)."""
        return self.post(self._aggregate(x, value_gate))

    # --- helpers ---------------------------------------------------------------------------------------
    def _split_qkv(self, x: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        qk = self.qk_dim if self.spec.dynamic == "hadamard" else self.dim
        q, k, v = self.qkv(x).split([qk, qk, self.dim], dim=-1)
        return q, k, _gated(v, gate)

    def _values(self, x: Tensor, gate: Tensor | None) -> Tensor:
        return _gated(self.value(x), gate)

    def _pixel_weights(self, x: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-pixel filters (B, G, K*K, H, W) and channels-last values, for inhomogeneous / hadamard."""
        b, h, w, _ = x.shape
        if self.spec.dynamic == "hadamard":
            q, k, v = self._split_qkv(x, gate)
            weights = self.generator(nchw(q * k)).reshape(b, self.heads, -1, h, w)
        else:
            v = self._values(x, gate)
            weights = nchw(self.generator(v)).reshape(b, self.heads, -1, h, w)
        return weights, v

    def _cached(self, key, make):
        if key not in self._masks:
            self._masks[key] = make()
        return self._masks[key]

    # --- connectivity: sliding -----------------------------------------------------------------------
    def _sliding_static(self, x: Tensor, gate: Tensor | None) -> Tensor:
        v = nchw(self._values(x, gate))
        c, k = self.dim, self.kernel
        kernel = self.static_weight.repeat_interleave(c // self.heads, 0).view(c, 1, k, k)
        return nhwc(F.conv2d(v, kernel, self.static_bias, padding=k // 2, groups=c))

    def _sliding_homogeneous(self, x: Tensor, gate: Tensor | None) -> Tensor:
        v = self._values(x, gate)
        b, h, w, c = v.shape
        k = self.kernel
        filters = _normalise(self.generator(v.mean((1, 2))).view(b, self.heads, k * k), self.weight_norm, 2)
        filters = filters.repeat_interleave(c // self.heads, 1).reshape(b * c, 1, k, k)
        # one grouped conv over the batch folded into channels: every sample gets its own kernel
        out = F.conv2d(nchw(v).reshape(1, b * c, h, w), filters, self.static_bias.repeat(b), padding=k // 2, groups=b * c)
        return nhwc(out.view(b, c, h, w))

    def _sliding_weighted(self, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, _ = x.shape
        k = self.kernel
        if self.spec.dynamic == "attention":
            q, key, v = (nchw(t).contiguous() for t in self._split_qkv(x, gate))
            logits = sliding_logits(q * self.head_dim**-0.5, key, k, self.heads)
            if self.spec.rel_pos:
                logits = logits + self.rel_table.view(1, self.heads, k * k, 1, 1)
            mask = self._cached(("nbr", h, w, x.device, x.dtype), lambda: neighbourhood_mask(k, h, w, x.device, x.dtype))
            weights = (logits + mask).softmax(2)
        else:
            weights, v = self._pixel_weights(x, gate)
            weights = _normalise(weights, self.weight_norm, 2)
            v = nchw(v).contiguous()
        out = sliding_aggregate(v, weights.contiguous(), k)
        if self.spec.ghost_head:  # ELSA's additive ghost head: a static per-channel filter on top
            out = out + F.conv2d(v, self.ghost, padding=k // 2, groups=self.dim)
        return nhwc(out)

    # --- connectivity: window --------------------------------------------------------------------------
    def _window(self, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        k, s, g, hd = self.kernel, self.shift, self.heads, self.head_dim
        n = k * k
        dynamic = self.spec.dynamic
        if dynamic == "attention":
            pixels = x  # q, k, v are made after partitioning: C channels move through roll and partition, not 3C
        elif dynamic == "static":
            pixels = self._values(x, gate)
        else:
            weights, v = self._pixel_weights(x, gate)
            pixels = torch.cat([v, nhwc(weights.flatten(1, 2))], -1)
        ph, pw = (-h) % k, (-w) % k
        if ph or pw:
            pixels = F.pad(pixels, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        if s:
            pixels = torch.roll(pixels, (-s, -s), (1, 2))
        windows = window_partition(pixels, (k, k)).view(b, -1, n, pixels.shape[-1])  # (B, nW, N, *)
        n_windows = windows.shape[1]
        shift_mask = self._cached(("shift", hp, wp, x.device), lambda: _shift_mask(hp, wp, k, s, x.device)) if s else None

        if dynamic == "attention":
            q, key, v = self.qkv(windows).view(b, n_windows, n, 3, g, hd).permute(3, 0, 1, 4, 2, 5).unbind(0)
            if gate is not None:
                v = v * gate.view(b, 1, g, 1, hd)
            bias = self._window_bias(n_windows, shift_mask, q.dtype)
            # heads of all windows side by side: one bias (nW*G, N, N) broadcasts over the batch
            q, key, v = (t.reshape(b, n_windows * g, n, hd) for t in (q, key, v))
            out = F.scaled_dot_product_attention(q, key, v, attn_mask=bias).view(b, n_windows, g, n, hd)
        else:
            v = windows[..., :c].reshape(b, n_windows, n, g, hd).transpose(2, 3)
            outside = None if shift_mask is None else shift_mask.unsqueeze(1)  # pairs across regions (nW, 1, N, N)
            if dynamic == "static":
                weights = self._static_window_weights(hp // k, wp // k)  # (nW | 1, G, N, N)
            else:  # each pixel's filter over the N members of its window
                weights = windows[..., c:].reshape(b, n_windows, n, g, n).transpose(2, 3)
            out = _normalise(weights, self.weight_norm, -1, outside) @ v
        out = window_reverse(out.transpose(2, 3).reshape(-1, k, k, c), (k, k), hp, wp)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        return out[:, :h, :w].contiguous() if ph or pw else out

    def _window_bias(self, n_windows: int, shift_mask: Tensor | None, dtype) -> Tensor | None:
        g, n = self.heads, self.kernel**2
        bias = None
        if self.spec.rel_pos:
            bias = self.rel_table[self.rel_index.view(-1)].view(n, n, g).permute(2, 0, 1).to(dtype)
        if shift_mask is not None:
            masked = torch.zeros(shift_mask.shape, dtype=dtype, device=shift_mask.device)
            masked = masked.masked_fill(shift_mask, float("-inf")).unsqueeze(1)  # (nW, 1, N, N)
            bias = masked if bias is None else masked + bias.unsqueeze(0)
        elif bias is not None:
            bias = bias.unsqueeze(0)
        return None if bias is None else bias.expand(n_windows, g, n, n).reshape(1, n_windows * g, n, n)

    def _static_window_weights(self, rows: int, cols: int) -> Tensor:
        bank = self.static_weight
        if bank.shape[0] == 1 or bank.shape[0] == rows * cols:
            return bank
        # per-window weights built for another map: resample the window grid (nearest), like timm's pos-embed
        built = (blocks(self.feature_size[0], self.kernel), blocks(self.feature_size[1], self.kernel))
        grid = bank.reshape(*built, -1).permute(2, 0, 1).unsqueeze(0)
        grid = F.interpolate(grid, size=(rows, cols), mode="nearest")
        return grid[0].permute(1, 2, 0).reshape(rows * cols, *bank.shape[1:])

    # --- connectivity: halo ------------------------------------------------------------------------------
    def _halo(self, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        k, halo, g, hd = self.kernel, self.spec.halo, self.heads, self.head_dim
        span = k + 2 * halo
        q, key, v = self._split_qkv(x, gate)
        ph, pw = (-h) % k, (-w) % k
        hp, wp = h + ph, w + pw
        q = window_partition(F.pad(q, (0, 0, 0, pw, 0, ph)), (k, k))  # (B*nB, k, k, C)
        n_blocks = q.shape[0] // b
        q = q.view(b, n_blocks, k * k, g, hd).transpose(2, 3)  # (B, nB, G, Nq, hd)
        kv = F.pad(nchw(torch.cat([key, v], -1)), (0, pw, 0, ph))
        kv = F.unfold(kv, span, padding=halo, stride=k).view(b, 2, g, hd, span * span, n_blocks)
        key, v = kv.permute(1, 0, 5, 2, 4, 3).unbind(0)  # (B, nB, G, Nkv, hd)
        inside = self._cached(("halo", h, w, x.device), lambda: self._halo_inside(h, w, hp, wp, x.device))
        logits = torch.zeros((), dtype=q.dtype, device=q.device).expand(1, n_blocks, 1, 1, span * span)
        logits = logits.masked_fill(~inside, float("-inf"))
        if self.spec.rel_pos:
            logits = logits + self._halo_rel_logits(q)
        q, key, v = (t.reshape(b, n_blocks * g, -1, hd) for t in (q, key, v))
        mask = logits.expand(-1, -1, g, k * k, -1).reshape(logits.shape[0], n_blocks * g, k * k, span * span)
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=mask)
        out = out.view(b, n_blocks, g, k * k, hd).transpose(2, 3).reshape(-1, k, k, c)
        return window_reverse(out, (k, k), hp, wp)[:, :h, :w].contiguous()

    def _halo_inside(self, h, w, hp, wp, device) -> Tensor:
        """(1, nB, 1, 1, span^2) bool: which key positions of each block's window lie on the map."""
        k, halo = self.kernel, self.spec.halo
        ones = F.pad(torch.ones(1, 1, h, w, device=device), (0, wp - w, 0, hp - h))
        inside = F.unfold(ones, k + 2 * halo, padding=halo, stride=k)  # (1, span^2, nB)
        return (inside > 0).transpose(1, 2)[:, :, None, None, :]

    def _halo_rel_logits(self, q: Tensor) -> Tensor:
        """HaloNet's relative logits q.(r_h[dy] + r_w[dx]) over each block's window: (B, nB, G, Nq, span^2)."""
        k, halo = self.kernel, self.spec.halo
        span = k + 2 * halo
        qs = q.reshape(*q.shape[:3], k, k, self.head_dim)
        pos = torch.arange(k, device=q.device)[:, None]
        idx = torch.arange(span, device=q.device)[None, :] - halo - pos + span - 1  # (k, span)
        along_w = torch.gather(qs @ self.rel_width.t(), -1, idx.expand(*qs.shape[:4], k, span))
        along_h = torch.gather(
            qs.transpose(3, 4) @ self.rel_height.t(), -1, idx.expand(*qs.shape[:4], k, span)
        ).transpose(3, 4)  # (..., qy, qx, ky)
        logits = along_h[..., :, None] + along_w[..., None, :]  # (..., qy, qx, ky, kx)
        return logits.reshape(*q.shape[:3], k * k, span * span)

    # --- connectivity: global ------------------------------------------------------------------------------
    def _global(self, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        g, hd = self.heads, self.head_dim
        if self.reduction > 1:
            q = self.q(x)
            reduced = self.sr_norm(nhwc(self.sr(nchw(x))))
            key, v = self.kv(reduced).split([c, c], -1)
            v = _gated(v, gate)
        else:
            q, key, v = self._split_qkv(x, gate)
        q, key, v = (t.reshape(b, -1, g, hd).transpose(1, 2) for t in (q, key, v))
        out = F.scaled_dot_product_attention(q, key, v)
        return out.transpose(1, 2).reshape(b, h, w, c)

    # --- connectivity: deformable (DCNv3) ---------------------------------------------------------------
    def _deformable(self, x: Tensor, gate: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        k, g = self.kernel, self.heads
        v = nchw(self._values(x, gate)).reshape(b * g, c // g, h, w)
        context = F.gelu(self.context_norm(nhwc(self.context(nchw(x)))))
        offsets = self.offset(context).view(b, h, w, g, k * k, 2)
        weights = _normalise(self.point_weight(context).view(b, h, w, g, k * k), self.weight_norm, -1)
        base = self._cached(("grid", h, w, x.device, x.dtype), lambda: self._base_grid(h, w, x.device, x.dtype))
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

    def _base_grid(self, h: int, w: int, device, dtype) -> Tensor:
        """(1, H, W, 1, K*K, 2): each pixel's regular K x K grid in normalised (x, y) coordinates."""
        k = self.kernel
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        dy, dx = torch.meshgrid(torch.arange(k, device=device), torch.arange(k, device=device), indexing="ij")
        px = xs[..., None] + (dx.flatten() - k // 2)
        py = ys[..., None] + (dy.flatten() - k // 2)
        grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], -1)
        return grid.to(dtype)[None, :, :, None]


def _gated(v: Tensor, gate: Tensor | None) -> Tensor:
    return v if gate is None else v * gate[:, None, None, :]


def mixer_cost(
    spec: MixerSpec,
    dim: int,
    feature_size: tuple[int, int],
    *,
    shifted: bool = False,
    value_proj: bool = True,
    out_dim: int | None = -1,
) -> C.Cost:
    """Parameters and MACs of `TokenMixer(spec, dim, feature_size, ...)` on one image, in closed form."""
    h, w = feature_size
    pixels = h * w
    kernel, _ = local_geometry(spec, feature_size, shifted)
    k2 = kernel * kernel
    g = spec.heads
    connectivity, dynamic = spec.connectivity, spec.dynamic
    total = C.Cost()

    if dynamic == "attention":
        r = reduction_at(spec, feature_size) if connectivity == "global" else 1
        if r > 1:
            reduced = (h // r) * (w // r)
            total += C.linear(dim, dim, pixels) + C.conv(dim, dim, r, reduced) + C.norm(dim)
            total += C.linear(dim, 2 * dim, reduced)
        elif connectivity == "window":  # made per window, so padded pixels count too
            total += C.linear(dim, 3 * dim, blocks(h, kernel) * blocks(w, kernel) * k2)
        else:
            total += C.linear(dim, 3 * dim, pixels)
    elif dynamic == "hadamard":
        total += C.linear(dim, 2 * hadamard_width(dim, spec.group_width) + dim, pixels)
    elif value_proj:
        total += projection_cost(spec.projection, dim, dim, pixels)

    if dynamic == "static" and connectivity == "sliding":
        total += C.params(g * k2 + dim)
    elif dynamic == "static":
        banks = 1 if spec.shared_positions else blocks(h, kernel) * blocks(w, kernel)
        total += C.params(banks * g * k2 * k2)
    elif dynamic == "homogeneous":
        hidden = max(1, dim // 4)
        total += C.linear(dim, hidden, 1, bias=False) + C.norm(hidden) + C.linear(hidden, g * k2, 1)
        total += C.params(dim)
    elif dynamic == "inhomogeneous" and connectivity == "deformable":
        total += C.conv(dim, dim, kernel, pixels, groups=dim) + C.norm(dim)
        total += C.linear(dim, g * k2 * 2, pixels) + C.linear(dim, g * k2, pixels)
    elif dynamic == "inhomogeneous":
        hidden = max(1, dim // 4)
        total += C.linear(dim, hidden, pixels, bias=False) + C.norm(hidden) + C.linear(hidden, g * k2, pixels)
    elif dynamic == "hadamard":
        d = hadamard_width(dim, spec.group_width)
        total += C.conv(d, d, _odd(kernel), pixels, groups=d // spec.group_width) + C.conv(d, g * k2, 1, pixels)
        if spec.ghost_head:
            total += C.conv(dim, dim, kernel, pixels, groups=dim, bias=False)

    if spec.rel_pos:
        if connectivity == "window":
            total += C.params((2 * kernel - 1) ** 2 * g)
        elif connectivity == "halo":
            span = kernel + 2 * spec.halo
            n_blocks = blocks(h, kernel) * blocks(w, kernel)
            # q @ table for the height and for the width table, on every padded query pixel
            total += C.params(2 * (2 * span - 1) * (dim // g))
            total += C.macs(2 * n_blocks * k2 * dim * (2 * span - 1))
        else:
            total += C.params(g * k2)

    # The aggregation itself: q.k and attn.v, or one multiply-add per weight and channel.
    if connectivity == "window":
        windows = blocks(h, kernel) * blocks(w, kernel)
        total += C.macs(windows * k2 * k2 * dim * (2 if dynamic == "attention" else 1))
    elif connectivity == "halo":
        windows = blocks(h, kernel) * blocks(w, kernel)
        total += C.macs(2 * windows * k2 * (kernel + 2 * spec.halo) ** 2 * dim)
    elif connectivity == "global":
        r = reduction_at(spec, feature_size)
        total += C.macs(2 * pixels * (h // r) * (w // r) * dim)
    else:  # sliding or deformable: K*K per channel and pixel, twice for q.k + attn.v
        total += C.macs(pixels * k2 * dim * (2 if dynamic == "attention" else 1))

    if spec.projection == "conv_bn":
        total += C.norm(dim)
    out_dim = dim if out_dim == -1 else out_dim
    if out_dim is not None:
        total += projection_cost(spec.projection or "linear", dim, out_dim, pixels)
    return total
