"""The builder and the counter: every ArchSpec becomes a plain nn.Module, and its cost is known in
closed form without building it (DESIGN §2: cheap enough to check every sampled point).

Imports torch, timm and the rest of searchspace only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed_nhwc, trunc_normal_
from timm.layers.helpers import get_device_dtype
from timm.models import build_model_with_cfg
from torch import Tensor, nn

from . import cost
from .blocks import (
    Block,
    Head,
    Stem,
    block_cost,
    downsample,
    downsample_cost,
    feature_sizes,
    head_cost,
    stem_cost,
)
from .geometry import is_shifted
from .layers import nchw, norm_layer
from .spec import ArchSpec
from .timm_internals import feature_take_indices


ARCHITECTURE = "nas_unified"  # the name `nas` registers the builder under with timm


def as_spec(spec) -> ArchSpec:
    """An ArchSpec from a spec, a preset name, a spec/config file path, or a mapping."""
    from .presets import load_spec, spec_from_data

    if isinstance(spec, ArchSpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_data(spec, "spec")
    return load_spec(str(spec) if isinstance(spec, Path) else spec)


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def stage_sizes(spec: ArchSpec, img_size=224, stem_stride: int = 4) -> list[tuple[int, int]]:
    return feature_sizes(spec.stem, len(spec.stages), img_size, stem_stride)


class Stage(nn.Module):
    def __init__(self, spec: ArchSpec, index: int, feature_size, drop_paths: list[float]):
        super().__init__()
        stage = spec.stages[index]
        dim = stage.dim
        self.pos_embed = None
        if stage.pos_embed:  # PVT: an absolute embedding per stage, resampled for other input sizes
            self.pos_embed = nn.Parameter(trunc_normal_(torch.zeros(1, *feature_size, dim), std=0.02))
        self.blocks = nn.Sequential(
            *[Block(stage, dim, feature_size, is_shifted(i), spec, drop_paths[i]) for i in range(stage.depth)]
        )
        self.norm = norm_layer("layernorm", dim) if spec.stage_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.pos_embed is not None:
            pos = self.pos_embed
            if pos.shape[1:3] != x.shape[1:3]:
                pos = resample_abs_pos_embed_nhwc(pos, list(x.shape[1:3]))
            x = x + pos
        return self.norm(self.blocks(x))


class Network(nn.Module):
    """stem -> stage 1 -> (downsample -> stage i)... -> head; channels-last inside, NCHW image in.

    timm's model API: forward_features (NHWC, like timm's Swin), forward_head(pre_logits=), reset_classifier,
    forward_intermediates (NCHW) and feature_info for features_only backbones; built by `build_model`.
    """

    def __init__(
        self, spec: ArchSpec, num_classes=1000, img_size=224, in_chans=3, drop_path=0.0, stem_stride=4,
        drop_rate=0.0, global_pool="avg",
    ):
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        sizes = stage_sizes(spec, img_size, stem_stride)
        dims = [s.dim for s in spec.stages]
        rates = torch.linspace(0, drop_path, sum(s.depth for s in spec.stages)).tolist()
        self.stem = Stem(spec, in_chans, dims[0], stem_stride)
        self.downsamples = nn.ModuleList(downsample(spec.downsample, dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.stages = nn.ModuleList()
        start = 0
        for i, stage in enumerate(spec.stages):
            self.stages.append(Stage(spec, i, sizes[i], rates[start : start + stage.depth]))
            start += stage.depth
        self.feature_info = [
            dict(num_chs=dim, reduction=stem_stride * 2**i, module=f"stages.{i}") for i, dim in enumerate(dims)
        ]
        self.output_fmt = "NHWC"
        self.num_features = dims[-1]
        self.head = Head(spec, dims[-1], num_classes, global_pool, drop_rate)
        self.head_hidden_size = self.head.num_features
        self.apply(_init_weights)
        for module in self.modules():
            if hasattr(module, "init_weights"):
                module.init_weights()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None, reset_other: bool = False) -> None:
        """A new classifier (0: none) and pooling; reset_other drops the pre-logits layer too."""
        self.num_classes = num_classes
        in_features = self.num_features if reset_other else None
        self.head.reset(num_classes, global_pool, in_features, **get_device_dtype(self))
        self.head_hidden_size = self.head.num_features

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Tables and embeddings indexed by position: no weight decay (timm's optimizer factory asks)."""
        keys = ("rel_table", "rel_height", "rel_width", "pos_embed")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in keys}

    def forward_intermediates(
        self, x: Tensor, indices=None, norm=False, stop_early=False, output_fmt="NCHW", intermediates_only=False
    ):
        """timm's feature API: the maps of the stages in `indices` (all if None, the last n if an int), and
        unless intermediates_only the final features for forward_head. norm: the head's norm on the last."""
        assert output_fmt in ("NCHW", "NHWC"), "output_fmt must be NCHW or NHWC"
        take, max_index = feature_take_indices(len(self.stages), indices)
        last = len(self.stages) - 1
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages[: max_index + 1] if stop_early else self.stages):
            if i:
                x = self.downsamples[i - 1](x)
            x = stage(x)
            if i in take:
                feature = self.head.norm(x) if norm and i == last else x
                intermediates.append(nchw(feature).contiguous() if output_fmt == "NCHW" else feature)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices=1, prune_norm=False, prune_head=True) -> list[int]:
        """Drop what the maps of `indices` do not need: later stages, the head (features_only builds call it)."""
        take, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        self.downsamples = self.downsamples[:max_index]
        if prune_norm or prune_end:
            self.head.norm = nn.Identity()  # sized for (and only applied to) the last stage
        if prune_end:
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "", reset_other=True)
        return take

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i:
                x = self.downsamples[i - 1](x)
            x = stage(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(
    spec, num_classes=1000, img_size=224, in_chans=3, drop_path=0.0, stem_stride=4, *,
    drop_rate=0.0, global_pool="avg", features_only=False, out_indices=None, pretrained_cfg_overlay=None,
) -> nn.Module:
    """A network for a spec (an ArchSpec, preset name, spec or exported config file, or mapping), built by
    timm's `build_model_with_cfg` as timm builds its own models.

    It runs at any input size the strides allow; windows and halo blocks are clamped to the maps of
    `img_size` as Swin does. `stem_stride` < 4 is the proxy recipe's low-resolution stem. timm's model
    arguments: `drop_rate` (dropout before the classifier), `global_pool` ('avg', 'max', 'avgmax',
    'catavgmax', '' for none), `features_only` with `out_indices` (default: every stage) for a backbone
    that returns NCHW maps, `pretrained_cfg_overlay` (e.g. the data set's mean and std).
    """
    spec = as_spec(spec)
    h, w = _pair(img_size)
    pretrained_cfg = {  # what timm's data and training helpers read off a model (resolve_data_config, train.py)
        "input_size": (in_chans, h, w),
        "pool_size": stage_sizes(spec, img_size, stem_stride)[-1],
        "num_classes": num_classes,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "first_conv": "stem.convs" if spec.stem == "patch" else "stem.convs.0",
        "classifier": "head.fc",
    }
    feature_cfg = {"feature_cls": "getter", "out_indices": tuple(range(len(spec.stages)))}
    if out_indices is not None:
        feature_cfg["out_indices"] = out_indices
    return build_model_with_cfg(
        Network, ARCHITECTURE, pretrained=False, pretrained_cfg=pretrained_cfg,
        pretrained_cfg_overlay=pretrained_cfg_overlay, feature_cfg=feature_cfg, features_only=features_only,
        spec=spec, num_classes=num_classes, img_size=img_size, in_chans=in_chans, drop_path=drop_path,
        stem_stride=stem_stride, drop_rate=drop_rate, global_pool=global_pool,
    )


def cost_by_part(spec, img_size=224, num_classes=1000, in_chans=3, stem_stride=4) -> list[tuple[str, cost.Cost]]:
    """[('stem', cost), ('stage 1', cost), ..., ('head', cost)]: a stage includes the downsampling before it."""
    spec = as_spec(spec)
    sizes = stage_sizes(spec, img_size, stem_stride)
    parts = [("stem", stem_cost(spec, in_chans, spec.stages[0].dim, _pair(img_size), stem_stride))]
    for i, (stage, size) in enumerate(zip(spec.stages, sizes)):
        pixels = size[0] * size[1]
        total = cost.Cost()
        if i:
            total += downsample_cost(spec.downsample, spec.stages[i - 1].dim, stage.dim, pixels)
        if stage.pos_embed:
            total += cost.params(pixels * stage.dim)
        for b in range(stage.depth):
            total += block_cost(stage, stage.dim, size, is_shifted(b), spec)
        if spec.stage_norm:
            total += cost.norm(stage.dim)
        parts.append((f"stage {i + 1}", total))
    last = sizes[-1]
    parts.append(("head", head_cost(spec, spec.stages[-1].dim, last[0] * last[1], num_classes)))
    return parts


def count(spec, img_size=224, num_classes=1000, in_chans=3, stem_stride=4) -> cost.Cost:
    """Parameters and MACs of the built network on one image, in closed form (no weights, ~1 ms)."""
    return sum((part for _, part in cost_by_part(spec, img_size, num_classes, in_chans, stem_stride)), cost.Cost())


def measure(model: nn.Module, img_size=224, in_chans=3) -> cost.Cost:
    """Parameters and MACs of a built model measured by running it (FlopCounterMode)."""
    h, w = _pair(img_size)
    model.eval()
    example = torch.randn(1, in_chans, h, w)
    return cost.Cost(sum(p.numel() for p in model.parameters()), cost.measure_macs(model, example))
