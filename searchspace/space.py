"""Space files: a declarative enumeration of the allowed values of every dimension, globally or per
stage, with ranges and conditional dimensions; sampling that Optuna can steer (DESIGN §1, §3).

A space is one tree walk (`_draw`) over named dimensions; the walk is driven by a picker: Optuna's
trial (`suggest`), a random generator (`sample`), or a spec being checked (`contains`).
Conditional dimensions are drawn only where they apply (as the registered axis values declare), and a
dimension whose choices depend on another carries it in its name (`s1.mixer.dynamic@window`) so that
Optuna sees fixed distributions. Imports nothing above `searchspace`.
"""

from __future__ import annotations

import itertools
import math
import random
import types
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterator

from annotated_types import Ge
from pydantic import ConfigDict, TypeAdapter, ValidationError

from . import cost
from .blocks import block_cost, feature_sizes
from .errors import NasError
from .mixer import mixer_cost
from .model import count
from .spec import (
    CONNECTIVITIES,
    DYNAMICS,
    ArchSpec,
    MixerSpec,
    StageSpec,
    declarer,
    dynamics_of,
    format_validation_error,
    options_of,
    read_document,
)

SPACE_DIR = Path(__file__).parent / "spaces"
DEFAULT_SPACE = SPACE_DIR / "unified.yaml"

NETWORK_DIMS = ("stem", "stem_extra_convs", "downsample", "norm", "act", "layer_scale", "stage_norm", "head_ratio")
STAGE_DIMS = ("depth", "dim", "layout", "interaction", "topology", "ffn_ratio", "ffn_local", "ffn_se", "pos_embed")
_MIXER_SECTIONS = ("mixer", "second_mixer")
_TOP_KEYS = ("name", "description", "stages", "network", "stage", *_MIXER_SECTIONS, "same_for_all_stages")
# Dimensions whose presence depends on nothing, so one value can be drawn for all stages (a keyed
# head_dim: one value per key, drawn once a stage first uses that key).
_SHAREABLE = {*(f"stage.{d}" for d in STAGE_DIMS if d != "interaction"), "mixer.connectivity", "mixer.head_dim"}


def mixer_dims() -> tuple[str, ...]:
    """A mixer's dimensions: its axes, the fields the registered values declare, head_dim (channels per head)."""
    declared = (f for f in MixerSpec.model_fields if f not in ("connectivity", "dynamic", "heads"))
    return ("connectivity", "dynamic", *declared, "head_dim")


def _sections() -> dict[str, tuple[str, ...]]:
    return {"network": NETWORK_DIMS, "stage": STAGE_DIMS, **dict.fromkeys(_MIXER_SECTIONS, mixer_dims())}


# --- domains -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    values: tuple

    def __iter__(self):
        return iter(self.values)

    def __contains__(self, value) -> bool:
        # Python has True == 1: a boolean matches only booleans, a number only numbers (1.0 matches 1)
        return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in self.values)

    def text(self) -> str:
        return ", ".join("null" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in self.values)


@dataclass(frozen=True)
class Range:
    """Integers low..high (inclusive) in steps, or floats when low/high/step are floats."""

    low: float
    high: float
    step: float = 1

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step))

    def __iter__(self):
        n = int(round((self.high - self.low) / self.step))
        return iter(self.low + i * self.step for i in range(n + 1))

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-9

    def text(self) -> str:
        return f"{self.low}..{self.high}" + (f" step {self.step}" if self.step != 1 else "")


Domain = Choice | Range


def _domain_size(domain: Domain) -> int:
    return sum(1 for _ in domain)


# --- pickers: who decides each dimension -----------------------------------------------------------------
class _RandomPicker:
    def __init__(self, rng: random.Random):
        self.rng, self.drawn = rng, {}

    def __call__(self, name, domain, path, from_spec=None):
        if name not in self.drawn:
            self.drawn[name] = self.rng.choice(list(domain))
        return self.drawn[name]


class _TrialPicker:
    def __init__(self, trial):
        self.trial = trial

    def __call__(self, name, domain, path, from_spec=None):
        if isinstance(domain, Range):
            if domain.is_int:
                return self.trial.suggest_int(name, domain.low, domain.high, step=domain.step)
            return self.trial.suggest_float(name, domain.low, domain.high, step=domain.step)
        return self.trial.suggest_categorical(name, list(domain.values))


class _Outside(Exception):
    pass


class _ReplayPicker:
    """Reads each dimension's value off a spec and checks it lies in the domain."""

    def __init__(self, data: dict):
        self.data, self.drawn = data, {}

    def __call__(self, name, domain, path, from_spec=None):
        value: Any = self.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                value = None  # an optional field the spec leaves unset (layer_scale: null)
                break
        if from_spec is not None:
            value = from_spec(value)
        if value not in domain:
            raise _Outside(f"{name}: {value} is not among {domain.text()}")
        if self.drawn.setdefault(name, value) != value:
            raise _Outside(f"{name}: differs between stages ({self.drawn[name]} and {value}), the space shares it")
        return value


# --- the space -----------------------------------------------------------------------------------------------
class SearchSpace:
    """A parsed space file. Use `load_space(path)`; `suggest`, `sample`, `contains`, `cardinality`."""

    def __init__(self, data: dict, source: str):
        self.source = source
        self.name = str(data.get("name") or Path(source).stem)
        self.description = data.get("description", "")
        self.num_stages = data.get("stages", 4)
        if not isinstance(self.num_stages, int) or not 1 <= self.num_stages <= 6:
            raise NasError(f"{source}: stages: must be a whole number of stages from 1 to 6 (got {self.num_stages!r})")
        shared = data.get("same_for_all_stages") or []
        if not isinstance(shared, list):
            raise NasError(f"{source}: same_for_all_stages: expected a list of dimensions")
        self.shared = {key if "." in str(key) else f"stage.{key}" for key in shared}
        self.dims: dict[str, dict[str, Any]] = {}
        for section, allowed in _sections().items():
            raw = data.get(section) or {}
            if not isinstance(raw, dict):
                raise NasError(f"{source}: {section}: expected a mapping of dimensions")
            self.dims[section] = {}
            for key, value in raw.items():
                if key not in allowed:
                    raise NasError(f"{source}: {section}.{key}: unknown dimension (allowed: {', '.join(allowed)})")
                self.dims[section][key] = self._parse(section, key, value)
        self._check()

    # -- parsing ---------------------------------------------------------------------------------------
    def _parse(self, section: str, key: str, raw) -> Any:
        where = f"{self.source}: {section}.{key}"
        if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in ("by_connectivity", "by_dynamic"):
            if section not in ("mixer", "second_mixer"):
                raise NasError(f"{where}: only mixer dimensions can depend on connectivity or dynamic")
            axis, table = next(iter(raw.items()))
            if key == "connectivity" or (key == "dynamic" and axis != "by_connectivity"):
                allowed = "a list of choices" + (" or by_connectivity" if key == "dynamic" else "")
                raise NasError(f"{where}: cannot be keyed {axis}, it is itself a key (allowed: {allowed})")
            names = CONNECTIVITIES if axis == "by_connectivity" else DYNAMICS
            if not isinstance(table, dict) or not table:
                raise NasError(f"{where}.{axis}: expected a mapping from {axis[3:]} to values")
            for name in table:
                if name not in names:
                    raise NasError(f"{where}.{axis}.{name}: unknown {axis[3:]} (allowed: {', '.join(names)})")
            return (axis[3:], {name: self._parse_stages(section, key, v, f"{where}.{axis}.{name}") for name, v in table.items()})
        return self._parse_stages(section, key, raw, where)

    def _parse_stages(self, section, key, raw, where):
        if section != "network" and isinstance(raw, list) and raw and all(isinstance(v, (list, dict)) for v in raw):
            if len(raw) != self.num_stages:
                raise NasError(f"{where}: {len(raw)} per-stage domains for {self.num_stages} stages")
            return [self._parse_domain(section, key, v, f"{where}[{i}]") for i, v in enumerate(raw)]
        return self._parse_domain(section, key, raw, where)

    def _parse_domain(self, section, key, raw, where) -> Domain:
        if isinstance(raw, dict):
            unknown = set(raw) - {"low", "high", "step"}
            if unknown or not {"low", "high"} <= set(raw):
                raise NasError(f"{where}: a range needs low and high (and optionally step), got keys {sorted(raw)}")
            low, high, step = raw["low"], raw["high"], raw.get("step", 1)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high, step)):
                raise NasError(f"{where}: low, high and step must be numbers")
            if step <= 0 or low > high:
                raise NasError(f"{where}: empty range {low}..{high} step {step}")
            domain = Range(low, high, step)
            values = [low, high]
        elif isinstance(raw, list):
            if not raw:
                raise NasError(f"{where}: empty list of choices (give at least one value)")
            domain = Choice(tuple(raw))
            values = raw
        else:
            domain = Choice((raw,))
            values = [raw]
        validate = _value_validator(section, key)
        for value in values:
            try:
                validate(value)
            except ValidationError as err:
                e = err.errors()[0]
                allowed = e.get("ctx", {}).get("expected")
                msg = f"{value!r} is not allowed (allowed: {allowed})" if allowed else f"{value!r}: {e['msg']}"
                raise NasError(f"{where}: {msg}") from None
        return domain

    # -- consistency -------------------------------------------------------------------------------------
    def _check(self):
        src = self.source
        for key in sorted(self.shared):
            section, _, dim = key.partition(".")
            if key not in _SHAREABLE:
                raise NasError(
                    f"{src}: same_for_all_stages: {key!r} cannot be shared (it is conditional or unknown); "
                    f"shareable: {', '.join(sorted(_SHAREABLE))}"
                )
            spec = self.dims[section].get(dim)
            if any(isinstance(sub, list) for sub in (spec[1].values() if isinstance(spec, tuple) else [spec])):
                raise NasError(f"{src}: same_for_all_stages: {key!r} has per-stage domains; give one domain to share it")
        for dim in ("depth", "dim"):
            if dim not in self.dims["stage"]:
                raise NasError(f"{src}: stage.{dim} is required")
        if "connectivity" not in self.dims["mixer"] or "dynamic" not in self.dims["mixer"] or "head_dim" not in self.dims["mixer"]:
            raise NasError(f"{src}: mixer needs connectivity, dynamic and head_dim")
        layouts = set(self._domain_values("stage", "layout", default="single"))
        if layouts - {"single"}:
            m2 = self.dims["second_mixer"]
            if not all(k in m2 for k in ("connectivity", "dynamic", "head_dim")):
                raise NasError(
                    f"{src}: stage.layout allows {'/'.join(sorted(layouts - {'single'}))}, so second_mixer needs "
                    "connectivity, dynamic and head_dim"
                )
        for section in ("mixer", "second_mixer"):
            if section == "second_mixer" and layouts == {"single"}:
                continue
            self._check_mixer(section, layouts)

    def _domain_values(self, section, key, default=None, stage=None) -> list:
        spec = self.dims[section].get(key)
        if spec is None:
            return [default]
        subs = spec[1].values() if isinstance(spec, tuple) else [spec]
        domains = [d for sub in subs for d in (_stage_domains(sub) if stage is None else [_at_stage(sub, stage)])]
        return list(dict.fromkeys(v for d in domains for v in d))

    def _check_mixer(self, section, layouts):
        src = self.source
        pairs: dict[tuple[str, str], None] = {}  # every (connectivity, dynamic) some stage can draw
        for i in range(self.num_stages):
            for c in self._domain(section, "connectivity", i):
                dynamics = self._domain(section, "dynamic", i, c)
                if dynamics is None:
                    raise NasError(f"{src}: {section}.dynamic: no values for connectivity '{c}', which the space allows")
                admitted = [d for d in dynamics if d in dynamics_of(c)]
                if not admitted:
                    per_stage = any(isinstance(self._sub(section, k, c), list) for k in ("connectivity", "dynamic"))
                    at = f" in stage {i + 1}" if per_stage else ""
                    raise NasError(
                        f"{src}: {section}: connectivity '{c}' admits dynamic {', '.join(dynamics_of(c))}, "
                        f"but {section}.dynamic allows only {', '.join(dynamics)}{at}"
                    )
                pairs.update(dict.fromkeys((c, d) for d in admitted))
        for c, d in pairs:
            if not self._keyed_values(section, "head_dim", c, d):
                raise NasError(f"{src}: {section}.head_dim: no values for a {c}/{d} mixer, which the space allows")
            for key, option in options_of(c, d).items():
                if option.default is None and not self._keyed_values(section, key, c, d):
                    raise NasError(f"{src}: {section}.{key}: no values for {declarer(key, c, d)}, which requires it")
            norms = self._keyed_values(section, "weight_norm", c, d)
            if norms and not set(norms) & set(DYNAMICS[d].weight_norms):  # a key left out: the default
                raise NasError(
                    f"{src}: {section}.weight_norm: none of {', '.join(norms)} applies to dynamic '{d}' "
                    f"(it admits {', '.join(DYNAMICS[d].weight_norms)})"
                )
            if CONNECTIVITIES[c].centred:
                for k in self._keyed_values(section, "kernel", c, d) or []:
                    if k % 2 == 0:
                        raise NasError(
                            f"{src}: {section}.kernel: {k} cannot serve connectivity '{c}' (a centred "
                            "neighbourhood needs an odd K); key kernel by_connectivity"
                        )
        for i in range(self.num_stages):
            parallel = "parallel" in self._domain_values("stage", "layout", default="single", stage=i)
            split = 2 if section == "mixer" and parallel else 1
            for hd in self._domain_values(section, "head_dim", stage=i):
                for dim in self._domain_values("stage", "dim", stage=i):
                    for width in {dim, dim // split}:
                        if width % hd or dim % split:
                            raise NasError(
                                f"{src}: {section}.head_dim: {hd} does not divide stage {i + 1}'s width {width} "
                                f"(dim {dim}{', halved by the parallel layout' if split == 2 else ''})"
                            )

    def _sub(self, section: str, key: str, connectivity=None, dynamic=None):
        """A dimension's domain (or per-stage domains) for one mixer, resolving by_connectivity / by_dynamic."""
        spec = self.dims[section].get(key)
        if isinstance(spec, tuple):
            axis, table = spec
            return table.get(connectivity if axis == "connectivity" else dynamic)
        return spec

    def _keyed_values(self, section, key, connectivity, dynamic) -> list | None:
        """Every value a mixer (connectivity, dynamic) may take for `key`; None when the space omits it."""
        if key not in self.dims[section]:
            return None
        sub = self._sub(section, key, connectivity, dynamic)
        return [] if sub is None else list(dict.fromkeys(v for d in _stage_domains(sub) for v in d))

    # -- the walk -------------------------------------------------------------------------------------------
    def _name(self, stage: int, section: str, key: str) -> str:
        """Optuna's name for a dimension: per stage (s2.mixer.kernel) or shared by all stages (all.depth)."""
        if section == "network":
            return key
        short = {"stage": "", "mixer": "mixer.", "second_mixer": "second."}[section]
        scope = "all" if f"{section}.{key}" in self.shared else f"s{stage + 1}"
        return f"{scope}.{short}{key}"

    def _domain(self, section: str, key: str, stage: int, connectivity=None, dynamic=None) -> Domain | None:
        sub = self._sub(section, key, connectivity, dynamic)
        return None if sub is None else _at_stage(sub, stage)

    def _draw(self, pick) -> dict:
        net: dict[str, Any] = {}
        for key in NETWORK_DIMS:
            domain = self.dims["network"].get(key)
            if domain is None or (key == "stem_extra_convs" and net.get("stem", "patch") != "overlap"):
                continue
            net[key] = pick(key, domain, (key,))
        stages = []
        for i in range(self.num_stages):
            stage: dict[str, Any] = {}
            for key in STAGE_DIMS:
                domain = self._domain("stage", key, i)
                if domain is None or (key == "interaction" and stage.get("layout") != "parallel"):
                    continue
                stage[key] = pick(self._name(i, "stage", key), domain, ("stages", i, key))
            layout = stage.get("layout", "single")
            first_width = stage["dim"] // 2 if layout == "parallel" else stage["dim"]
            stage["mixer"] = self._draw_mixer(pick, i, "mixer", first_width)
            if layout != "single":
                stage["second_mixer"] = self._draw_mixer(pick, i, "second_mixer", stage["dim"])
            stages.append(stage)
        return {**net, "stages": stages}

    def _draw_mixer(self, pick, i: int, section: str, width: int) -> dict:
        name = lambda key: self._name(i, section, key)  # noqa: E731
        path = lambda key: ("stages", i, section, key)  # noqa: E731
        c = pick(name("connectivity"), self._domain(section, "connectivity", i), path("connectivity"))
        allowed = Choice(tuple(d for d in self._domain(section, "dynamic", i, c) if d in dynamics_of(c)))
        d = pick(f"{name('dynamic')}@{c}", allowed, path("dynamic"))
        mixer: dict[str, Any] = {"connectivity": c, "dynamic": d}
        keyed = lambda key: f"@{c}" if self._axis(section, key) == "connectivity" else f"@{d}" if self._axis(section, key) == "dynamic" else ""  # noqa: E731
        head_dim = pick(
            name("head_dim") + keyed("head_dim"),
            self._domain(section, "head_dim", i, c, d),
            ("stages", i, section, "heads"),
            from_spec=lambda heads: width // heads,
        )
        mixer["heads"] = width // head_dim
        for key in options_of(c, d):  # the fields this pair has, where the space draws them
            domain = self._domain(section, key, i, c, d)
            if domain is not None:
                mixer[key] = pick(name(key) + keyed(key), domain, path(key))
        domain = self._domain(section, "weight_norm", i, c, d)
        if domain is not None:
            norms = Choice(tuple(n for n in domain if n in DYNAMICS[d].weight_norms))
            if norms.values:  # the dynamic filters the choices, so the name carries it (and any key)
                by = f"{c}/{d}" if self._axis(section, "weight_norm") == "connectivity" else d
                mixer["weight_norm"] = pick(f"{name('weight_norm')}@{by}", norms, path("weight_norm"))
        return mixer

    def _axis(self, section, key) -> str | None:
        spec = self.dims[section].get(key)
        return spec[0] if isinstance(spec, tuple) else None

    def _validate(self, data: dict) -> ArchSpec:
        try:
            return ArchSpec.model_validate(data)
        except ValidationError as err:
            raise NasError(format_validation_error(err, f"{self.source} (a drawn point)", ArchSpec)) from None

    # -- the public face ------------------------------------------------------------------------------------
    def suggest(self, trial) -> ArchSpec:
        """Draw a point through an Optuna trial: every dimension is a named suggest_* call."""
        return self._validate(self._draw(_TrialPicker(trial)))

    def sample(self, rng: random.Random | int | None = None) -> ArchSpec:
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return self._validate(self._draw(_RandomPicker(rng)))

    def sample_within(self, budget: int, n: int, seed: int | None = None, img_size=224) -> list[ArchSpec]:
        """n distinct points whose MACs are within `budget` (rejection sampling)."""
        rng = random.Random(seed)
        found: dict[str, ArchSpec] = {}
        for _ in range(max(200, 200 * n)):
            spec = self.sample(rng)
            if spec.id not in found and count(spec, img_size=img_size).macs <= budget:
                found[spec.id] = spec
                if len(found) == n:
                    break
        if not found:
            cheapest, cheapest_cost = self.cheapest(img_size)
            raise NasError(
                f"no point of {self.source} fits the budget of {cost.format_macs(budget)} MACs: the cheapest needs "
                f"{cost.format_macs(cheapest_cost.macs)}"
            )
        return list(found.values())

    def why_not(self, spec: ArchSpec) -> str | None:
        """None when the spec is a point of this space; otherwise the first dimension that leaves it."""
        if len(spec.stages) != self.num_stages:
            return f"it has {len(spec.stages)} stages, the space {self.num_stages}"
        data = spec.to_dict()
        try:
            drawn = ArchSpec.model_validate(self._draw(_ReplayPicker(data))).to_dict()
        except _Outside as out:
            return str(out)
        except ValidationError as err:
            return str(err.errors()[0]["msg"])
        for key in ("name", "notes"):
            data.pop(key, None)
        if drawn != data:
            return _first_difference(drawn, data) or "it sets a dimension the space leaves at its default"
        return None

    def contains(self, spec: ArchSpec) -> bool:
        return self.why_not(spec) is None

    def params_of(self, spec: ArchSpec) -> dict:
        """The named dimensions that draw this spec, as `suggest` names them (for Optuna's enqueue_trial)."""
        why = self.why_not(spec)
        if why is not None:
            raise NasError(f"{spec.label} is not a point of {self.source}: {why}")
        picker = _ReplayPicker(spec.to_dict())
        self._draw(picker)
        return dict(picker.drawn)

    def dimensions(self) -> list[tuple[str, str]]:
        """(dimension, values in words) for display."""
        rows = []
        for section, dims in self.dims.items():
            for key, spec in dims.items():
                label = f"{section}.{key}" + (" (all stages)" if self._name(0, section, key).startswith("all.") else "")
                rows.append((label, _domain_text(spec)))
        return rows

    # -- counting ---------------------------------------------------------------------------------------------
    def mixer_points(self, section: str, stage: int, width: int, fixed: dict | None = None) -> Iterator[dict]:
        """Every mixer the space allows for a stage, as spec mappings (`fixed`: shared dimensions' values)."""
        fixed = fixed or {}
        for c in self._domain(section, "connectivity", stage):
            if fixed.get(f"{section}.connectivity", c) != c:
                continue
            for d in self._domain(section, "dynamic", stage, c):
                if d not in dynamics_of(c):
                    continue
                head_dims = list(self._domain(section, "head_dim", stage, c, d))
                shared = fixed.get(f"{section}.head_dim")
                if isinstance(shared, dict):  # keyed: {key: value} for the keys being counted
                    key = c if self._axis(section, "head_dim") == "connectivity" else d
                    head_dims = [shared[key]] if key in shared else []
                elif shared is not None:
                    head_dims = [shared]
                axes: list[tuple[str, list]] = [("head_dim", head_dims)]
                for key in options_of(c, d):
                    domain = self._domain(section, key, stage, c, d)
                    if domain is not None:
                        axes.append((key, list(domain)))
                domain = self._domain(section, "weight_norm", stage, c, d)
                if domain is not None:
                    norms = [n for n in domain if n in DYNAMICS[d].weight_norms]
                    if norms:
                        axes.append(("weight_norm", norms))
                for values in itertools.product(*(v for _, v in axes)):
                    point = {"connectivity": c, "dynamic": d, **dict(zip((k for k, _ in axes), values))}
                    point["heads"] = width // point.pop("head_dim")
                    yield point

    def _stage_count(self, i: int, fixed: dict) -> int:
        def size(key):
            if f"stage.{key}" in fixed:
                return 1
            domain = self._domain("stage", key, i)
            return 1 if domain is None else _domain_size(domain)

        base = math.prod(size(k) for k in ("depth", "dim", "topology", "ffn_ratio", "ffn_local", "ffn_se", "pos_embed"))
        layouts = [fixed["stage.layout"]] if "stage.layout" in fixed else list(self._domain("stage", "layout", i) or ["single"])
        # head_dim -> heads is one-to-one at any width, so counting at a width every head_dim divides is exact
        first = sum(1 for _ in self.mixer_points("mixer", i, 1 << 20, fixed))
        total = 0
        for layout in layouts:
            if layout == "single":
                total += first
            else:
                second = sum(1 for _ in self.mixer_points("second_mixer", i, 1 << 20))
                inter = _domain_size(self._domain("stage", "interaction", i) or Choice((True,)))
                total += first * second * (inter if layout == "parallel" else 1)
        return base * total

    def cardinality(self) -> int:
        """The exact number of distinct points."""
        net = 1
        for key in NETWORK_DIMS:
            if key == "stem_extra_convs":
                continue
            net *= _domain_size(self.dims["network"].get(key) or Choice((None,)))
        if "stem_extra_convs" in self.dims["network"]:
            stems = list(self.dims["network"].get("stem") or ["patch"])
            extra = _domain_size(self.dims["network"]["stem_extra_convs"])
            net = net // len(stems) * sum(extra if s == "overlap" else 1 for s in stems)
        keys = sorted(k for k in self.shared if self._axis(*k.split(".")) is None)
        domains = [list(self.dims[k.partition(".")[0]][k.partition(".")[2]]) for k in keys]
        total = 0
        for values in itertools.product(*domains):
            total += self._stages_count(dict(zip(keys, values)))
        return net * total

    def _stages_count(self, fixed: dict) -> int:
        """The points of all stages, given the values of the shared dimensions in `fixed`."""
        if "mixer.head_dim" not in self.shared or self._axis("mixer", "head_dim") is None:
            return math.prod(self._stage_count(i, fixed) for i in range(self.num_stages))
        # A shared keyed head_dim holds one value per key, drawn once a stage first uses the key; two
        # points differ only in the values of the keys used, so count the stages by the set of keys used.
        _, table = self.dims["mixer"]["head_dim"]
        by_used = Counter({frozenset(): 1})
        for i in range(self.num_stages):
            per_key = {k: self._stage_count(i, {**fixed, "mixer.head_dim": {k: next(iter(d))}}) for k, d in table.items()}
            after = Counter()
            for used, n in by_used.items():
                for k, m in per_key.items():
                    after[used | {k}] += n * m
            by_used = after
        return sum(n * math.prod(_domain_size(table[k]) for k in used) for used, n in by_used.items())

    def cheapest(self, img_size=224) -> tuple[ArchSpec, cost.Cost]:
        """The point with the fewest MACs: every network choice tried; per stage the least depth and
        width (all costs grow with them) and the cheapest layout, mixers and FFN at that width.
        With dimensions shared across stages this is a lower bound."""
        best = None
        stage_cache: dict = {}
        net_keys = [k for k in NETWORK_DIMS if k in self.dims["network"]]
        for values in itertools.product(*(list(self.dims["network"][k]) for k in net_keys)):
            net = dict(zip(net_keys, values))
            if net.get("stem", "patch") != "overlap":
                net.pop("stem_extra_convs", None)
            sizes = feature_sizes(net.get("stem", "patch"), self.num_stages, img_size)
            stem = net.get("stem", "patch")
            # a stage's cheapest blocks depend on the network only through its map size (the stem)
            for i in range(self.num_stages):
                if (stem, i) not in stage_cache:
                    stage_cache[stem, i] = self._cheapest_stage(net, i, sizes[i])
            stages = [stage_cache[stem, i] for i in range(self.num_stages)]
            spec = self._validate({**net, "stages": stages})
            spec_cost = count(spec, img_size)
            if best is None or spec_cost.macs < best[1].macs:
                best = (spec, spec_cost)
        return best

    def _cheapest_stage(self, net: dict, i: int, size) -> dict:
        stage = {}
        for key in ("depth", "dim", "topology", "ffn_ratio", "ffn_local", "ffn_se", "pos_embed"):
            domain = self._domain("stage", key, i)
            if domain is not None:
                stage[key] = min(domain, key=lambda v: (v, str(v)))
        options = []
        for layout in self._domain("stage", "layout", i) or ["single"]:
            width = stage["dim"] // 2 if layout == "parallel" else stage["dim"]
            candidate = {**stage, "layout": layout}
            candidate["mixer"] = min(self.mixer_points("mixer", i, width), key=lambda m: _mixer_macs(m, width, size))
            if layout != "single":
                candidate["second_mixer"] = min(
                    self.mixer_points("second_mixer", i, stage["dim"]), key=lambda m: _mixer_macs(m, stage["dim"], size)
                )
            if layout == "parallel" and "interaction" in self.dims["stage"]:
                candidate["interaction"] = min(self._domain("stage", "interaction", i))
            spec = StageSpec.model_validate(candidate)
            arch = ArchSpec.model_validate({**net, "stages": [candidate]})
            options.append((block_cost(spec, spec.dim, size, False, arch).macs, candidate))
        return min(options, key=lambda option: option[0])[1]


def _mixer_macs(point: dict, width: int, size) -> int:
    return mixer_cost(MixerSpec.model_validate(point), width, size).macs


def _stage_domains(spec) -> list[Domain]:
    return spec if isinstance(spec, list) else [spec]


def _at_stage(spec, stage: int) -> Domain:
    return spec[stage] if isinstance(spec, list) else spec


def _domain_text(spec) -> str:
    if isinstance(spec, tuple):
        axis, table = spec
        return "; ".join(f"{k}: {_domain_text(v)}" for k, v in table.items()) + f" (by {axis})"
    if isinstance(spec, list):
        return " | ".join(d.text() for d in spec) + " (per stage)"
    return spec.text()


def _first_difference(a, b, path="") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            if key not in a:
                return f"{path}{key}: the space has no dimension for it"
            if key not in b:
                return f"{path}{key}: missing from the spec"
            diff = _first_difference(a[key], b[key], f"{path}{key}.")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}].")
            if diff:
                return diff
        return None
    return None if a == b else f"{path.rstrip('.')}: the space draws {a!r} where the spec has {b!r}"


def _value_validator(section: str, key: str):
    """Validates one value of a dimension against the spec field it fills (type, allowed literals, bounds)."""
    model = {"network": ArchSpec, "stage": StageSpec, "mixer": MixerSpec, "second_mixer": MixerSpec}[section]
    # strict: a space's 1 is no true, nor its true a 1 (a point's values must match its space's: Choice)
    strict = ConfigDict(strict=True)
    if key == "head_dim":
        return TypeAdapter(Annotated[int, Ge(1)], config=strict).validate_python
    field = model.model_fields[key]
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if key != "layer_scale" and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = args[0]  # an optional field takes a real value in a space (layer_scale: null = none)
    typ = Annotated[(annotation, *field.metadata)] if field.metadata else annotation
    return TypeAdapter(typ, config=strict).validate_python


def load_space(path: str | Path | None = None) -> SearchSpace:
    """A space from a YAML/JSON file, or a shipped space by name ('unified', 'tiny'); default: unified."""
    if path is None:
        path = DEFAULT_SPACE
    path = Path(path)
    if not path.exists() and (SPACE_DIR / f"{path}.yaml").exists():
        path = SPACE_DIR / f"{path}.yaml"
    if not path.exists():
        shipped = ", ".join(p.stem for p in sorted(SPACE_DIR.glob("*.yaml")))
        raise NasError(f"{path}: no such space file (shipped spaces: {shipped})")
    data = read_document(path)
    if not isinstance(data, dict):
        raise NasError(f"{path}: expected a mapping with network/stage/mixer sections")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise NasError(f"{path}: {unknown[0]}: unknown key (allowed: {', '.join(_TOP_KEYS)})")
    return SearchSpace(data, str(path))
