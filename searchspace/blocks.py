"""The pieces around the token mixer (DESIGN §1.1): FFN, block topology, serial / parallel layouts,
stems, downsampling and head; each with a `*_cost` function beside it in closed form.

Tensors are channels-last (B, H, W, C) between modules, as in timm's Swin.
Imports torch, timm and searchspace's spec, cost, layers and mixer only.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, LayerNorm2d, LayerScale, Mlp, SEModule, create_classifier, make_divisible
from timm.models.swin_transformer import PatchMerging
from torch import Tensor, nn

from . import cost
from .geometry import feature_sizes, out_size, stem_output, stem_strides  # noqa: F401 (feature_sizes: public here too)
from .layers import ConvBNAct, LastDimBatchNorm, act_layer, nchw, nhwc, norm_layer
from .mixer import TokenMixer, mixer_cost
from .spec import ArchSpec, StageSpec

SE_RATIO = 0.25  # LocalViT's squeeze-excitation reduction


# --- FFN -------------------------------------------------------------------------------------------------
def ffn_hidden(dim: int, ratio: float) -> int:
    return max(1, int(round(dim * ratio)))


class LocalFeedForward(nn.Module):
    """LocalViT's FFN: linear -> act -> k x k depth-wise conv -> act -> [SE] -> linear (timm's Mlp has no
    place for the depth-wise conv)."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module], local: int, se: bool):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.local = nn.Conv2d(hidden, hidden, local, padding=local // 2, groups=hidden) if local else nn.Identity()
        self.local_act = act() if local else nn.Identity()
        self.se = SEModule(hidden, rd_ratio=SE_RATIO) if se else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.fc1(x))
        x = nhwc(self.se(self.local_act(self.local(nchw(x)))))
        return self.fc2(x)


def feed_forward(stage: StageSpec, dim: int, act: type[nn.Module]) -> nn.Module:
    hidden = ffn_hidden(dim, stage.ffn_ratio)
    if stage.ffn_local or stage.ffn_se:
        return LocalFeedForward(dim, hidden, act, stage.ffn_local, stage.ffn_se)
    return Mlp(dim, hidden, act_layer=act)


def feed_forward_cost(stage: StageSpec, dim: int, pixels: int) -> cost.Cost:
    hidden = ffn_hidden(dim, stage.ffn_ratio)
    total = cost.linear(dim, hidden, pixels) + cost.linear(hidden, dim, pixels)
    if stage.ffn_local:
        total += cost.conv(hidden, hidden, stage.ffn_local, pixels, groups=hidden)
    if stage.ffn_se:
        reduced = make_divisible(hidden * SE_RATIO, 8, round_limit=0.0)
        total += cost.conv(hidden, reduced, 1, 1) + cost.conv(reduced, hidden, 1, 1)
    return total


# --- token-mixer layouts ----------------------------------------------------------------------------------
class ParallelMixer(nn.Module):
    """MixFormer's layout: two STM branches side by side, optional bi-directional interactions.

    The first branch mixes C/2 channels (LN(linear C->C/2) in), the second C channels (LN(linear C->C)
    in) and projects to C/2. Channel interaction: the second branch's features gate the first's
    values; spatial interaction: the first's output gates the second's. Output: linear C->C of both.
    """

    def __init__(self, stage: StageSpec, dim: int, feature_size, shifted: bool):
        super().__init__()
        half = dim // 2
        self.first_in = nn.Sequential(nn.Linear(dim, half), nn.LayerNorm(half))
        self.first = TokenMixer(stage.mixer, half, feature_size, shifted=shifted, value_proj=False, out_dim=None)
        self.first_norm = nn.LayerNorm(half)
        self.second_in = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.second = TokenMixer(stage.second_mixer, dim, feature_size, shifted=shifted, value_proj=False, out_dim=half)
        self.second_norm = LastDimBatchNorm(half)
        self.interaction = stage.interaction
        if stage.interaction:
            c8, c16 = max(1, dim // 8), max(1, dim // 16)
            self.channel_gate = nn.Sequential(
                nn.Linear(dim, c8), nn.BatchNorm1d(c8), nn.GELU(), nn.Linear(c8, half), nn.Sigmoid()
            )
            self.spatial_gate = nn.Sequential(
                nn.Linear(half, c16), LastDimBatchNorm(c16), nn.GELU(), nn.Linear(c16, 1), nn.Sigmoid()
            )
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        second = self.second.mix(self.second_in(x))
        gate = self.channel_gate(second.mean((1, 2))) if self.interaction else None
        first = self.first.mix(self.first_in(x), value_gate=gate)
        second = self.second.proj(second)
        if self.interaction:
            second = second * self.spatial_gate(first)
        return self.proj(torch.cat([self.first_norm(first), self.second_norm(second)], -1))


def parallel_cost(stage: StageSpec, dim: int, feature_size, shifted: bool) -> cost.Cost:
    pixels = feature_size[0] * feature_size[1]
    half = dim // 2
    total = cost.linear(dim, half, pixels) + cost.norm(half) + cost.norm(half)
    total += mixer_cost(stage.mixer, half, feature_size, shifted=shifted, value_proj=False, out_dim=None)
    total += cost.linear(dim, dim, pixels) + cost.norm(dim) + cost.norm(half)
    total += mixer_cost(stage.second_mixer, dim, feature_size, shifted=shifted, value_proj=False, out_dim=half)
    if stage.interaction:
        c8, c16 = max(1, dim // 8), max(1, dim // 16)
        total += cost.linear(dim, c8, 1) + cost.norm(c8) + cost.linear(c8, half, 1)
        total += cost.linear(half, c16, pixels) + cost.norm(c16) + cost.linear(c16, 1, pixels)
    return total + cost.linear(dim, dim, pixels)


def token_mixer(stage: StageSpec, dim: int, feature_size, shifted: bool) -> nn.Module:
    if stage.layout == "parallel":
        return ParallelMixer(stage, dim, feature_size, shifted)
    first = TokenMixer(stage.mixer, dim, feature_size, shifted=shifted)
    if stage.layout == "single":
        return first
    return nn.Sequential(first, TokenMixer(stage.second_mixer, dim, feature_size, shifted=shifted))


def token_mixer_cost(stage: StageSpec, dim: int, feature_size, shifted: bool) -> cost.Cost:
    if stage.layout == "parallel":
        return parallel_cost(stage, dim, feature_size, shifted)
    total = mixer_cost(stage.mixer, dim, feature_size, shifted=shifted)
    if stage.layout == "serial":
        total += mixer_cost(stage.second_mixer, dim, feature_size, shifted=shifted)
    return total


# --- the block ----------------------------------------------------------------------------------------------
def _mixer_normalises_input(stage: StageSpec) -> bool:
    """DWNet's conv-BN-ReLU projection normalises the mixer's input, so the block adds no norm before it."""
    return stage.layout != "parallel" and stage.mixer.projection == "conv_bn"


class Block(nn.Module):
    """transformer: x + mixer(norm(x)); x + ffn(norm(x)).   convnext: x + ffn(norm(mixer(x)))."""

    def __init__(self, stage: StageSpec, dim: int, feature_size, shifted: bool, arch: ArchSpec, drop_path: float):
        super().__init__()
        self.topology = stage.topology
        self.mixer = token_mixer(stage, dim, feature_size, shifted)
        if self.topology == "transformer":
            self.norm1 = nn.Identity() if _mixer_normalises_input(stage) else norm_layer(arch.norm, dim)
            self.ls1 = LayerScale(dim, arch.layer_scale) if arch.layer_scale else nn.Identity()
        self.norm2 = norm_layer(arch.norm, dim)
        self.ffn = feed_forward(stage, dim, act_layer(arch.act))
        self.ls2 = LayerScale(dim, arch.layer_scale) if arch.layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.topology == "transformer":
            x = x + self.drop_path(self.ls1(self.mixer(self.norm1(x))))
            return x + self.drop_path(self.ls2(self.ffn(self.norm2(x))))
        return x + self.drop_path(self.ls2(self.ffn(self.norm2(self.mixer(x)))))


def block_cost(stage: StageSpec, dim: int, feature_size, shifted: bool, arch: ArchSpec) -> cost.Cost:
    pixels = feature_size[0] * feature_size[1]
    total = token_mixer_cost(stage, dim, feature_size, shifted) + cost.norm(dim)
    total += feed_forward_cost(stage, dim, pixels)
    scales = 1
    if stage.topology == "transformer":
        scales = 2
        if not _mixer_normalises_input(stage):
            total += cost.norm(dim)
    if arch.layer_scale:
        total += cost.params(scales * dim)
    return total


# --- stem, downsampling, head -------------------------------------------------------------------------------
class Stem(nn.Module):
    """NCHW image -> channels-last features at 1/stem_stride. patch: one s x s conv + LN (Swin).
    overlap: 3x3 conv to C/2 + LN + GELU, [extra 3x3 convs], 3x3 conv to C + LN (the STM paper, MixFormer)."""

    def __init__(self, arch: ArchSpec, in_chans: int, dim: int, stem_stride: int):
        super().__init__()
        if arch.stem == "patch":
            self.convs = nn.Conv2d(in_chans, dim, stem_stride, stem_stride)
            self.norm = nn.LayerNorm(dim)
        else:
            half = max(1, dim // 2)
            first, last = stem_strides(stem_stride)
            layers = [nn.Conv2d(in_chans, half, 3, first, 1), LayerNorm2d(half), nn.GELU()]
            for _ in range(arch.stem_extra_convs):
                layers += [nn.Conv2d(half, half, 3, 1, 1), LayerNorm2d(half), nn.GELU()]
            layers.append(nn.Conv2d(half, dim, 3, last, 1))
            self.convs = nn.Sequential(*layers)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(nhwc(self.convs(x)))


def stem_cost(arch: ArchSpec, in_chans: int, dim: int, size: tuple[int, int], stem_stride: int) -> cost.Cost:
    h, w = stem_output(arch.stem, size, stem_stride)
    if arch.stem == "patch":
        return cost.conv(in_chans, dim, stem_stride, h * w) + cost.norm(dim)
    half = max(1, dim // 2)
    first, _ = stem_strides(stem_stride)
    mid = out_size(size[0], 3, first) * out_size(size[1], 3, first)
    total = cost.conv(in_chans, half, 3, mid) + cost.norm(half)
    total += (cost.conv(half, half, 3, mid) + cost.norm(half)) * arch.stem_extra_convs
    return total + cost.conv(half, dim, 3, h * w) + cost.norm(dim)


def downsample(kind: str, cin: int, cout: int) -> nn.Module:
    if kind == "patch_merge":  # Swin: concatenate 2x2 -> LN -> linear 4C -> C'
        return PatchMerging(cin, cout)
    return ConvBNAct(cin, cout, 3, 2, nn.LayerNorm(cout), act=False, bias=False)


def downsample_cost(kind: str, cin: int, cout: int, out_pixels: int) -> cost.Cost:
    if kind == "patch_merge":
        return cost.norm(4 * cin) + cost.linear(4 * cin, cout, out_pixels, bias=False)
    return cost.conv(cin, cout, 3, out_pixels, bias=False) + cost.norm(cout)


def head_hidden(arch: ArchSpec, dim: int) -> int:
    """The pre-logits width: head_width, or head_ratio times the last stage's width; 0 for none."""
    if arch.head_width:
        return arch.head_width
    return ffn_hidden(dim, arch.head_ratio) if arch.head_ratio else 0


class Head(nn.Module):
    """[final LN unless every stage ends in one] -> [per pixel: linear to the pre-logits width + BN + GELU]
    -> global pool -> dropout -> linear, on channels-last maps.

    Pooling, dropout and classifier are timm's (`create_classifier`); the rest is ours because timm's
    NormMlpClassifierHead pools before its pre-logits layer, and MixFormer projects every pixel first.
    """

    def __init__(self, arch: ArchSpec, dim: int, num_classes: int, pool_type: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        self.norm = nn.Identity() if arch.stage_norm else nn.LayerNorm(dim)
        hidden = head_hidden(arch, dim)
        if hidden:
            self.pre_logits = nn.Sequential(nn.Linear(dim, hidden, bias=False), LastDimBatchNorm(hidden), nn.GELU())
        else:
            self.pre_logits = nn.Identity()
        self.in_features = hidden or dim
        self.global_pool, self.drop, self.fc = create_classifier(
            self.in_features, num_classes, pool_type, input_fmt="NHWC", drop_rate=drop_rate
        )
        self.num_features = self.in_features * self.global_pool.feat_mult()  # the pooled, pre-logits width

    def reset(self, num_classes: int, pool_type: str | None = None, in_features: int | None = None, **device_dtype) -> None:
        """A new classifier (0: none), and new pooling unless None. With `in_features` the pre-logits layer
        goes too and the classifier takes the (normalised) features of that width directly."""
        if in_features is not None:
            self.pre_logits = nn.Identity()
            self.in_features = in_features
        pool_type = self.global_pool.pool_type if pool_type is None else pool_type
        self.global_pool, self.fc = create_classifier(
            self.in_features, num_classes, pool_type, input_fmt="NHWC", **device_dtype
        )
        self.global_pool.train(self.training)
        self.fc.train(self.training)
        self.num_features = self.in_features * self.global_pool.feat_mult()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.global_pool(self.pre_logits(self.norm(x))))
        return x if pre_logits else self.fc(x)


def head_cost(arch: ArchSpec, dim: int, pixels: int, num_classes: int) -> cost.Cost:
    total = cost.Cost() if arch.stage_norm else cost.norm(dim)
    hidden = head_hidden(arch, dim)
    if hidden:
        total += cost.linear(dim, hidden, pixels, bias=False) + cost.norm(hidden)
    if num_classes:
        total += cost.linear(hidden or dim, num_classes, 1)
    return total
