"""What one architecture is: a typed, validated, YAML/JSON-serialisable spec with a stable id (DESIGN §1).

Pure data and the rules that make a point valid; imports no torch and nothing above `searchspace`.
"""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import NasError
from .geometry import canonical, digest

Connectivity = Literal["window", "halo", "sliding", "global", "deformable"]
Dynamic = Literal["static", "homogeneous", "inhomogeneous", "attention", "hadamard"]
WeightNorm = Literal["none", "softmax", "filter_norm"]
Projection = Literal["linear", "conv_bn"]
Layout = Literal["single", "serial", "parallel"]
Topology = Literal["transformer", "convnext"]
Stem = Literal["patch", "overlap"]
Downsample = Literal["patch_merge", "overlap"]
Norm = Literal["layernorm", "batchnorm"]
Act = Literal["gelu", "relu", "hard_swish"]

# Which dynamic weights each sampling set admits (DESIGN §1.2); every other pair is not a point.
DYNAMICS_BY_CONNECTIVITY: dict[str, tuple[str, ...]] = {
    "window": ("static", "inhomogeneous", "attention", "hadamard"),
    "halo": ("attention",),
    "sliding": ("static", "homogeneous", "inhomogeneous", "attention", "hadamard"),
    "global": ("attention",),
    "deformable": ("inhomogeneous",),
}
# Why a pair is left out, in the user's words (pairs not listed: "no seed defines it").
_WHY_NOT = {
    ("global", "static"): "static weights over all positions tie the network to one input size",
    ("global", "homogeneous"): "one kernel over all positions is global pooling, not a mixer",
    ("global", "inhomogeneous"): "per-position weights over all positions tie the network to one input size",
    ("global", "hadamard"): "Hadamard attention generates K x K local filters only",
    ("window", "homogeneous"): "a per-sample kernel shared by all positions needs a sliding neighbourhood",
    ("deformable", "static"): "DCNv3 predicts its sampling weights; static deformable weights are not a seed point",
}
# Which weight normalisation each dynamic admits (ELSA's study); the first is the default.
WEIGHT_NORMS_BY_DYNAMIC: dict[str, tuple[str, ...]] = {
    "static": ("none",),
    "homogeneous": ("none", "filter_norm"),
    "inhomogeneous": ("none", "softmax", "filter_norm"),
    "attention": ("softmax",),
    "hadamard": ("softmax", "filter_norm"),
}


class Condition(NamedTuple):
    """When a conditional mixer field applies, in words and as a test, and its default."""

    applies: Callable[[str, str], bool]  # (connectivity, dynamic) -> bool
    where: str
    default: Any


# The conditional fields of a mixer; the space files draw a dimension only where it applies.
MIXER_CONDITIONS: dict[str, Condition] = {
    "kernel": Condition(lambda c, d: c != "global", "every connectivity but global", None),
    "shift": Condition(lambda c, d: c == "window", "connectivity 'window'", False),
    "halo": Condition(lambda c, d: c == "halo", "connectivity 'halo'", 3),
    "reduction": Condition(lambda c, d: c == "global", "connectivity 'global'", 1),
    "shared_positions": Condition(
        lambda c, d: c == "window" and d == "static", "static window weights (Local MLP)", True
    ),
    "rel_pos": Condition(
        lambda c, d: d == "attention" and c in ("window", "halo", "sliding"),
        "local attention (window, halo or sliding with dynamic 'attention')",
        True,
    ),
    "ghost_head": Condition(
        lambda c, d: c == "sliding" and d == "hadamard", "Hadamard attention over a sliding neighbourhood", False
    ),
    # ELSA's generator conv has d / group_width groups (the authors' default 8; their ELSA-Swin-T passes 4)
    "group_width": Condition(lambda c, d: d == "hadamard", "Hadamard attention (dynamic 'hadamard')", 4),
    "projection": Condition(
        lambda c, d: d in ("static", "homogeneous", "inhomogeneous"),
        "convolution-like weights (static, homogeneous, inhomogeneous)",
        "linear",
    ),
}


def _rule(key: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("rule", "{message}", {"key": key, "message": message})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MixerSpec(_Model):
    """One spatial token mixer: y_i = W_out sum_{j in S(i)} w_ij (.) (W_in x_j)."""

    connectivity: Connectivity
    dynamic: Dynamic
    heads: int = Field(ge=1, description="channel groups with distinct weights; equal to the width = depth-wise")
    kernel: int | None = Field(None, ge=1, le=31, description="window / neighbourhood / halo block side K")
    shift: bool | None = None
    halo: int | None = Field(None, ge=1, le=15)
    reduction: int | None = Field(None, ge=1, le=32)
    shared_positions: bool | None = None
    rel_pos: bool | None = None
    weight_norm: WeightNorm | None = None
    ghost_head: bool | None = None
    group_width: int | None = Field(None, ge=1, le=64, description="channels per group of ELSA's filter generator")
    projection: Projection | None = None

    @model_validator(mode="after")
    def _check_point(self) -> "MixerSpec":
        c, d = self.connectivity, self.dynamic
        allowed = DYNAMICS_BY_CONNECTIVITY[c]
        if d not in allowed:
            why = _WHY_NOT.get((c, d), "no seed paper defines this pair")
            raise _rule(
                "dynamic",
                f"'{d}' does not combine with connectivity '{c}' ({why}; with '{c}' use: {', '.join(allowed)})",
            )
        for field, cond in MIXER_CONDITIONS.items():
            value = getattr(self, field)
            if cond.applies(c, d):
                if value is None:
                    if cond.default is None:
                        raise _rule(field, f"is required for connectivity '{c}'")
                    setattr(self, field, cond.default)
            elif value is not None:
                raise _rule(field, f"applies only to {cond.where}; this mixer is {c}/{d}")
        norms = WEIGHT_NORMS_BY_DYNAMIC[d]
        if self.weight_norm is None:
            self.weight_norm = norms[0]
        elif self.weight_norm not in norms:
            raise _rule("weight_norm", f"'{self.weight_norm}' does not apply to dynamic '{d}' (allowed: {', '.join(norms)})")
        if c in ("sliding", "deformable") and self.kernel % 2 == 0:
            raise _rule("kernel", f"a {c} neighbourhood is centred on its pixel, so K must be odd (got {self.kernel})")
        return self

    def summary(self) -> str:
        """The mixer in words, e.g. 'window 7 shifted, attention, 3 heads, rel-pos'."""
        where = {
            "window": f"window {self.kernel}" + (" shifted" if self.shift else ""),
            "halo": f"halo {self.kernel}+{self.halo}",
            "sliding": f"sliding {self.kernel}x{self.kernel}",
            "global": "global" + (f" /{self.reduction}" if self.reduction and self.reduction > 1 else ""),
            "deformable": f"deformable {self.kernel}x{self.kernel}",
        }[self.connectivity]
        extras = [self.dynamic, f"{self.heads} heads"]
        if self.shared_positions is False:
            extras.append("per-window weights")
        if self.rel_pos:
            extras.append("rel-pos")
        if self.ghost_head:
            extras.append("ghost head")
        if self.weight_norm not in ("none", WEIGHT_NORMS_BY_DYNAMIC[self.dynamic][0]):
            extras.append(self.weight_norm)
        if self.projection == "conv_bn":
            extras.append("conv-BN")
        return f"{where}, " + ", ".join(extras)


class StageSpec(_Model):
    """`depth` blocks of width `dim`: each a token mixer (one, serial or parallel STMs) and an FFN."""

    depth: int = Field(ge=1, le=64)
    dim: int = Field(ge=2, le=4096)
    mixer: MixerSpec
    layout: Layout = "single"
    second_mixer: MixerSpec | None = None
    interaction: bool | None = None
    topology: Topology = "transformer"
    ffn_ratio: float = Field(4.0, gt=0, le=16)
    ffn_local: int = Field(0, ge=0, le=15, description="0: none; k: a k x k depth-wise conv inside the FFN (LocalViT)")
    ffn_se: bool = False
    pos_embed: bool = False

    @model_validator(mode="after")
    def _check_stage(self) -> "StageSpec":
        if self.layout == "single":
            if self.second_mixer is not None:
                raise _rule("second_mixer", "applies only to layouts 'serial' and 'parallel'")
        elif self.second_mixer is None:
            raise _rule("second_mixer", f"layout '{self.layout}' needs a second mixer")
        if self.layout == "parallel":
            if self.dim % 2:
                raise _rule("dim", f"a parallel layout splits the channels in two, so dim must be even (got {self.dim})")
            if self.interaction is None:
                self.interaction = True
        elif self.interaction is not None:
            raise _rule("interaction", "applies only to layout 'parallel' (MixFormer's bi-directional interactions)")
        if self.ffn_local and self.ffn_local % 2 == 0:
            raise _rule("ffn_local", f"the FFN's depth-wise kernel must be odd (got {self.ffn_local})")
        for key, mixer, width in self.mixer_widths():
            if width % mixer.heads:
                raise _rule(f"{key}.heads", f"{mixer.heads} heads do not divide the mixer's {width} channels")
        return self

    def mixer_widths(self) -> list[tuple[str, MixerSpec, int]]:
        """Each STM of the block with the channel width it mixes (parallel: the first branch gets dim/2)."""
        first = self.dim // 2 if self.layout == "parallel" else self.dim
        out = [("mixer", self.mixer, first)]
        if self.second_mixer is not None:
            out.append(("second_mixer", self.second_mixer, self.dim))
        return out


class ArchSpec(_Model):
    """A hierarchical backbone: stem -> stages (downsampling between) -> head (DESIGN §1)."""

    name: str | None = None
    notes: str | None = None
    stem: Stem = "patch"
    stem_extra_convs: int | None = Field(None, ge=0, le=4)
    downsample: Downsample = "patch_merge"
    norm: Norm = "layernorm"
    act: Act = "gelu"
    layer_scale: float | None = Field(None, gt=0, le=1)
    stage_norm: bool = False
    head_ratio: float = Field(0.0, ge=0, le=16, description="pre-logits width / last stage width; 0: none")
    head_width: int | None = Field(None, ge=1, le=8192, description="pre-logits width in channels (MixFormer: 1280)")
    stages: list[StageSpec] = Field(min_length=1, max_length=6)

    @model_validator(mode="after")
    def _check_arch(self) -> "ArchSpec":
        if self.stem == "overlap":
            if self.stem_extra_convs is None:
                self.stem_extra_convs = 0
        elif self.stem_extra_convs is not None:
            raise _rule("stem_extra_convs", "applies only to stem 'overlap'")
        if self.head_width is not None and self.head_ratio:
            raise _rule("head_width", "give the pre-logits width either as head_width or as head_ratio, not both")
        return self

    # -- identity and serialisation ------------------------------------------------------------
    def to_dict(self) -> dict:
        """The canonical form: every applicable field, no inapplicable ones."""
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def id(self) -> str:
        """A stable short id of the network built at 224 (name and notes are not part of it): specs that
        differ only in settings that change nothing there (a shift of a window that covers its map ...)
        share it (`geometry.canonical`)."""
        return self.id_at(224, 4)

    def id_at(self, img_size=224, stem_stride: int = 4) -> str:
        """The id of the network built at another input size and stem stride (a proxy's geometry)."""
        return digest(canonical(self.to_dict(), img_size, stem_stride))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, width=100)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def label(self) -> str:
        return self.name or self.id

    # -- transformations -----------------------------------------------------------------------
    def scaled(self, width: float) -> "ArchSpec":
        """The same architecture with every stage's width, and head_width, multiplied by `width` (the proxy recipe).

        Head counts are kept (depth-wise stays depth-wise) and widths rounded to a multiple that
        every head count divides, so each scaled point is valid.
        """
        if width == 1.0:
            return self
        stages = []
        for stage in self.stages:
            split = 2 if stage.layout == "parallel" else 1
            unit = 1
            for _, mixer, w in stage.mixer_widths():
                if mixer.heads != w:  # depth-wise mixers follow the width; others keep their heads
                    unit = math.lcm(unit, mixer.heads * (split if mixer is stage.mixer else 1))
            unit = math.lcm(unit, split)
            dim = max(unit, round(stage.dim * width / unit) * unit)
            data = stage.model_dump(exclude_none=True)
            data["dim"] = dim
            for key, mixer, w in stage.mixer_widths():
                if mixer.heads == w:
                    data[key]["heads"] = dim // (split if key == "mixer" else 1)
            stages.append(data)
        data = self.model_dump(exclude_none=True)
        data["stages"] = stages
        if self.head_width:
            data["head_width"] = max(1, round(self.head_width * width))
        return ArchSpec.model_validate(data)

    def summary(self) -> list[str]:
        """Stage by stage in words: depth x width, mixer(s), FFN."""
        lines = []
        for i, s in enumerate(self.stages, 1):
            mix = s.mixer.summary()
            if s.second_mixer is not None:
                joint = " -> " if s.layout == "serial" else " || "
                mix = f"{mix}{joint}{s.second_mixer.summary()}"
                if s.layout == "parallel" and s.interaction:
                    mix += " (interactions)"
            ffn = f"FFN x{s.ffn_ratio:g}" + (f" + dw{s.ffn_local}" if s.ffn_local else "") + (" + SE" if s.ffn_se else "")
            lines.append(f"stage {i}: {s.depth} x {s.dim}, {s.topology}, {mix}; {ffn}")
        return lines


# -- reading files, with errors that name the file, the key and the allowed values ---------------
def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    problems = err.errors()
    e = problems[0]
    loc = list(e["loc"])
    typ = e["type"]
    if typ == "rule":
        key = e["ctx"]["key"]
        loc += key.split(".")
        msg = e["ctx"]["message"]
    elif typ == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        msg = f"unknown key (allowed: {', '.join(allowed)})"
    elif typ == "literal_error":
        msg = f"{e['input']!r} is not allowed (allowed: {e['ctx']['expected']})"
    elif typ == "missing":
        msg = "is required"
    else:
        msg = f"{e['msg']} (got {e['input']!r})"
    where = _loc_text(loc)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{source}: {where}: {msg}{more}" if where else f"{source}: {msg}{more}"


def _loc_text(loc: list) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fields_at(model: type[BaseModel], loc: list) -> list[str]:
    """The keys a model accepts at a location such as ['stages', 0, 'mixer']."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = current.model_fields[part].annotation
        current = next(
            (a for a in (annotation, *_flat_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if current is None:
            return []
    return list(current.model_fields)


def _flat_args(annotation) -> list:
    out = []
    for arg in typing.get_args(annotation):
        out.append(arg)
        out.extend(_flat_args(arg))
    return out


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file with safe loaders only (no object construction)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NasError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise NasError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise NasError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise NasError(f"{path}{at}: malformed YAML: {problem}") from None


def spec_from_data(data: Any, source: str) -> ArchSpec:
    """An ArchSpec from parsed data: a spec mapping, or an exported model config holding one under `spec`."""
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        data = data["spec"]
    if not isinstance(data, dict):
        raise NasError(f"{source}: expected a mapping of spec keys, got {type(data).__name__}")
    try:
        return ArchSpec.model_validate(data)
    except ValidationError as err:
        raise NasError(format_validation_error(err, source, ArchSpec)) from None
