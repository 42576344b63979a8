"""What one architecture is: a typed, validated, YAML/JSON-serialisable spec with a stable id (DESIGN §1).

Pure data and the rules that make a point valid; imports no torch and nothing above `searchspace`.
"""

from __future__ import annotations

import functools
import json
import math
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from .errors import NasError
from .geometry import canonical, digest

Layout = Literal["single", "serial", "parallel"]
Topology = Literal["transformer", "convnext"]
Stem = Literal["patch", "overlap"]
Downsample = Literal["patch_merge", "overlap"]
Norm = Literal["layernorm", "batchnorm"]
Act = Literal["gelu", "relu", "hard_swish"]


# -- the mixer's axes: registries of named values (DESIGN §1.4) ----------------------------------------------
# Each value is a class in searchspace/axes (or the user's code) holding its parameters, forward and cost; the
# spec reads only what makes a point valid off it: its name, the fields it declares (`options`), the weight
# forms it serves or has (`kernels`, `form`), the values of the other axis it refuses and why (`why_not`), a
# connectivity's `centred` and `describe`, a dynamic weight's `weight_norms`.
CONNECTIVITIES: dict[str, type] = {}
DYNAMICS: dict[str, type] = {}
WEIGHT_NORMS: dict[str, type] = {}


@dataclass(frozen=True)
class Option:
    """A mixer field an axis value reads (kernel, shift, halo ...), declared by that value: its type and bounds,
    its default where it applies (None: the spec must give it), the values of the other axis it is limited to
    (`only`: names or weight forms; empty: all), and the words a summary uses for a value."""

    annotation: Any
    default: Any = None
    ge: int | None = None
    le: int | None = None
    description: str | None = None
    only: tuple[str, ...] = ()
    words: dict = field(default_factory=dict, compare=False)


# field -> [(axis, value, option)]: who declared each conditional field, in declaration order
_DECLARED: dict[str, list[tuple[str, str, Option]]] = {}


def register_connectivity(cls: type) -> type:
    """Class decorator: make a Connectivity subclass a value of the spec's `connectivity`."""
    _register(CONNECTIVITIES, "connectivity", cls)
    return cls


def register_dynamic(cls: type) -> type:
    """Class decorator: make a DynamicWeight subclass a value of the spec's `dynamic`."""
    # every dynamic weight has a normalisation: the field comes with the first (after the connectivities' fields)
    if "weight_norm" not in MixerSpec.model_fields:
        names = Annotated[str, AfterValidator(_one_of(WEIGHT_NORMS))]
        _set_field("weight_norm", FieldInfo.from_annotated_attribute(names | None, Field(None)))
    _register(DYNAMICS, "dynamic", cls)
    return cls


def register_weight_norm(cls: type) -> type:
    """Class decorator: make a WeightNorm subclass a value of the spec's `weight_norm`."""
    _register(WEIGHT_NORMS, "weight_norm", cls)
    return cls


def unregister(cls: type) -> None:
    """Take a registered value out again, with the fields no other value declares."""
    for axis, registry in (("connectivity", CONNECTIVITIES), ("dynamic", DYNAMICS), ("weight_norm", WEIGHT_NORMS)):
        if registry.get(cls.name) is cls:
            del registry[cls.name]
            for name in list(_DECLARED):
                _DECLARED[name] = [e for e in _DECLARED[name] if e[:2] != (axis, cls.name)]
                if not _DECLARED[name]:
                    del _DECLARED[name]
                    _set_field(name, None)
    _forget_pairs()


def _register(registry: dict, axis: str, cls: type) -> None:
    old = registry.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"{axis} {cls.name!r} is already registered by {old.__module__}.{old.__qualname__}")
    for name, option in getattr(cls, "options", {}).items():
        known = [o for _, _, o in _DECLARED.get(name, [])]
        if known and replace(option, only=()) != replace(known[0], only=()):
            raise ValueError(f"{cls.__qualname__} declares {name!r} unlike {known[0]}")
        if name not in MixerSpec.model_fields:
            bounds = Field(None, ge=option.ge, le=option.le, description=option.description)
            _set_field(name, FieldInfo.from_annotated_attribute(option.annotation | None, bounds))
        entries = [e for e in _DECLARED.get(name, []) if e[:2] != (axis, cls.name)]
        _DECLARED[name] = entries + [(axis, cls.name, option)]
    registry[cls.name] = cls
    _forget_pairs()


def _set_field(name: str, info: FieldInfo | None) -> None:
    """Add (or with None remove) a field of MixerSpec. pydantic has no public way to change a model class's
    fields: set them and rebuild the models that hold it."""
    if info is None:
        del MixerSpec.__pydantic_fields__[name]
    else:
        MixerSpec.__pydantic_fields__[name] = info
    for model in (MixerSpec, StageSpec, ArchSpec):
        model.model_rebuild(force=True)


def _one_of(registry: dict) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in registry:
            names = [repr(n) for n in registry]
            expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    return check


def why_not(connectivity: str, dynamic: str) -> str | None:
    """None when a connectivity and a dynamic weight make a point, else why not in the user's words: the
    connectivity must have a kernel for the weights' form (or for this one dynamic weight), and neither may
    refuse the other."""
    c, d = CONNECTIVITIES[connectivity], DYNAMICS[dynamic]
    reason = d.why_not.get(connectivity) or c.why_not.get(dynamic) or c.why_not.get(d.form)
    if reason is None and (dynamic in c.kernels or d.form in c.kernels):
        return None
    return reason or "no seed paper defines this pair"


@functools.cache
def dynamics_of(connectivity: str) -> tuple[str, ...]:
    """The dynamic weights a connectivity admits, in registration order."""
    return tuple(d for d in DYNAMICS if why_not(connectivity, d) is None)


def options_of(connectivity: str, dynamic: str) -> dict[str, Option]:
    """The conditional fields a mixer of this pair has (weight_norm aside): the connectivity's, then the dynamic's."""
    return _pair(connectivity, dynamic)[0]


@functools.cache
def _pair(connectivity: str, dynamic: str) -> tuple[dict[str, Option], tuple[str, ...]]:
    """(the pair's options, the order of a mixer's keys when written: axes and heads, the connectivity's
    fields, the weight norm, the dynamic weight's fields)."""
    c, d = CONNECTIVITIES[connectivity], DYNAMICS[dynamic]
    own = {k: o for k, o in c.options.items() if not o.only or dynamic in o.only or d.form in o.only}
    lent = {k: o for k, o in d.options.items() if k not in own and (not o.only or connectivity in o.only)}
    return {**own, **lent}, ("connectivity", "dynamic", "heads", *own, "weight_norm", *lent)


def declarer(name: str, connectivity: str, dynamic: str) -> str:
    """Which of a pair's values declares a field, in words: "connectivity 'window'"."""
    return f"connectivity '{connectivity}'" if name in CONNECTIVITIES[connectivity].options else f"dynamic '{dynamic}'"


def _forget_pairs() -> None:
    for cached in (dynamics_of, _pair):
        cached.cache_clear()


def _where(name: str) -> str:
    """Where a field applies, in words: "connectivity 'window' or 'halo' with dynamic 'attention'"."""
    groups: dict[tuple[str, tuple], list[str]] = {}
    for axis, value, option in _DECLARED[name]:
        groups.setdefault((axis, option.only), []).append(value)
    phrases = []
    for (axis, only), values in groups.items():
        other = "dynamic" if axis == "connectivity" else "connectivity"
        phrase = f"{axis} {_either(values)}"
        phrases.append(phrase + (f" with {other} {_either(only)}" if only else ""))
    return "; or ".join(phrases)


def _either(names) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _rule(key: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("rule", "{message}", {"key": key, "message": message})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MixerSpec(_Model):
    """One spatial token mixer: y_i = W_out sum_{j in S(i)} w_ij (.) (W_in x_j).

    The axes name registered values; the other fields (kernel, shift, weight_norm ...) are added by the values
    that declare them and hold a value exactly where they apply.
    """

    connectivity: Annotated[str, AfterValidator(_one_of(CONNECTIVITIES))]
    dynamic: Annotated[str, AfterValidator(_one_of(DYNAMICS))]
    heads: int = Field(ge=1, description="channel groups with distinct weights; equal to the width = depth-wise")

    @model_validator(mode="after")
    def _check_point(self) -> "MixerSpec":
        c, d = self.connectivity, self.dynamic
        why = why_not(c, d)
        if why is not None:
            raise _rule(
                "dynamic", f"'{d}' does not combine with connectivity '{c}' ({why}; with '{c}' use: {', '.join(dynamics_of(c))})"
            )
        applies = options_of(c, d)
        for name in _DECLARED:
            value, option = getattr(self, name), applies.get(name)
            if option is None:
                if value is not None:
                    raise _rule(name, f"applies only to {_where(name)}; this mixer is {c}/{d}")
            elif value is None:
                if option.default is None:
                    raise _rule(name, f"is required for {declarer(name, c, d)}")
                setattr(self, name, option.default)
        norms = DYNAMICS[d].weight_norms
        if self.weight_norm is None:
            self.weight_norm = norms[0]
        elif self.weight_norm not in norms:
            raise _rule("weight_norm", f"'{self.weight_norm}' does not apply to dynamic '{d}' (allowed: {', '.join(norms)})")
        if CONNECTIVITIES[c].centred and self.kernel % 2 == 0:
            raise _rule("kernel", f"a {c} neighbourhood is centred on its pixel, so K must be odd (got {self.kernel})")
        return self

    @model_serializer(mode="wrap")
    def _in_order(self, handler) -> dict:
        """Keys in the pair's order (axes, heads, the connectivity's fields, weight norm, the dynamic's)."""
        data = handler(self)
        order = _pair(self.connectivity, self.dynamic)[1]
        return dict(sorted(data.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))

    def summary(self) -> str:
        """The mixer in words, e.g. 'window 7 shifted, attention, 3 heads, rel-pos'."""
        options = options_of(self.connectivity, self.dynamic)
        extras = [self.dynamic, f"{self.heads} heads"]
        for name in _pair(self.connectivity, self.dynamic)[1][3:]:
            value = getattr(self, name)
            if name == "weight_norm":
                if value not in ("none", DYNAMICS[self.dynamic].weight_norms[0]):
                    extras.append(value)
            elif value in options[name].words:
                extras.append(options[name].words[value])
        return f"{CONNECTIVITIES[self.connectivity].describe(self)}, " + ", ".join(extras)


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

