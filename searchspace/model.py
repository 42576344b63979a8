"""The builder and the counter: every ArchSpec becomes a plain nn.Module, and its cost is known in
closed form without building it (DESIGN §2: cheap enough to check every sampled point).

Imports torch, timm and the rest of searchspace only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed_nhwc, trunc_normal_
from torch import Tensor, nn

from . import cost as C
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
from .layers import norm_layer
from .spec import ArchSpec


def as_spec(spec) -> ArchSpec:
    """An ArchSpec from a spec, a preset name, a spec/config file path, or a mapping."""
    from .presets import load_spec

    if isinstance(spec, ArchSpec):
        return spec
    if isinstance(spec, dict):
        from .spec import spec_from_data

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
    """stem -> stage 1 -> (downsample -> stage i)... -> head; channels-last inside, NCHW image in."""

    def __init__(self, spec: ArchSpec, num_classes=1000, img_size=224, in_chans=3, drop_path=0.0, stem_stride=4):
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
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
        self.head = Head(spec, dims[-1], num_classes)
        self.num_features = dims[-1]
        h, w = _pair(img_size)
        # what timm's data and training helpers read off a model (resolve_data_config, train.py)
        self.pretrained_cfg = self.default_cfg = {
            "input_size": (in_chans, h, w),
            "num_classes": num_classes,
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "crop_pct": 0.875,
            "interpolation": "bicubic",
            "first_conv": "stem.convs" if spec.stem == "patch" else "stem.convs.0",
            "classifier": "head.fc",
        }
        self.apply(_init_weights)
        for module in self.modules():
            if hasattr(module, "init_weights"):
                module.init_weights()

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.head.fc.in_features, num_classes) if num_classes else nn.Identity()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Tables and embeddings indexed by position: no weight decay (timm's optimizer factory asks)."""
        keys = ("rel_table", "rel_height", "rel_width", "pos_embed")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in keys}

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i:
                x = self.downsamples[i - 1](x)
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(spec, num_classes=1000, img_size=224, in_chans=3, drop_path=0.0, stem_stride=4) -> nn.Module:
    """A plain nn.Module for a spec (an ArchSpec, preset name, spec or exported config file, or mapping).

    It runs at any input size the strides allow; windows and halo blocks are clamped to the maps of
    `img_size` as Swin does. `stem_stride` < 4 is the proxy recipe's low-resolution stem.
    """
    return Network(as_spec(spec), num_classes, img_size, in_chans, drop_path, stem_stride)


def cost_by_part(spec, img_size=224, num_classes=1000, in_chans=3, stem_stride=4) -> list[tuple[str, C.Cost]]:
    """[('stem', cost), ('stage 1', cost), ..., ('head', cost)]: a stage includes the downsampling before it."""
    spec = as_spec(spec)
    sizes = stage_sizes(spec, img_size, stem_stride)
    parts = [("stem", stem_cost(spec, in_chans, spec.stages[0].dim, _pair(img_size), stem_stride))]
    for i, (stage, size) in enumerate(zip(spec.stages, sizes)):
        pixels = size[0] * size[1]
        total = C.Cost()
        if i:
            total += downsample_cost(spec.downsample, spec.stages[i - 1].dim, stage.dim, pixels)
        if stage.pos_embed:
            total += C.params(pixels * stage.dim)
        for b in range(stage.depth):
            total += block_cost(stage, stage.dim, size, is_shifted(b), spec)
        if spec.stage_norm:
            total += C.norm(stage.dim)
        parts.append((f"stage {i + 1}", total))
    last = sizes[-1]
    parts.append(("head", head_cost(spec, spec.stages[-1].dim, last[0] * last[1], num_classes)))
    return parts


def count(spec, img_size=224, num_classes=1000, in_chans=3, stem_stride=4) -> C.Cost:
    """Parameters and MACs of the built network on one image, in closed form (no weights, ~1 ms)."""
    return sum((cost for _, cost in cost_by_part(spec, img_size, num_classes, in_chans, stem_stride)), C.Cost())


def measure(model: nn.Module, img_size=224, in_chans=3) -> C.Cost:
    """Parameters and MACs of a built model measured by running it (FlopCounterMode)."""
    h, w = _pair(img_size)
    model.eval()
    example = torch.randn(1, in_chans, h, w)
    return C.Cost(sum(p.numel() for p in model.parameters()), C.measure_macs(model, example))
