"""The seeds' hand-made networks as named points of the space (DESIGN §1.3), and spec loading: where the
built-in axis values are registered before a spec names them.

Each preset is a data file in presets/: the spec, plus the published figures it must reproduce.
Imports searchspace's spec and errors, and (on first use) searchspace.axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import NasError
from .spec import ArchSpec, format_validation_error, read_document

PRESET_DIR = Path(__file__).parent / "presets"
TOLERANCE = {"params": 0.03, "macs": 0.05}  # published.json's tolerance for reproducing a row


@cache
def _preset_documents() -> dict[str, dict]:
    docs = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        docs[path.stem] = read_document(path)
    return docs


def preset_names() -> list[str]:
    return list(_preset_documents())


@cache
def preset(name: str) -> ArchSpec:
    docs = _preset_documents()
    if name not in docs:
        raise NasError(f"unknown preset {name!r} (presets: {', '.join(docs)})")
    return spec_from_data(docs[name], str(PRESET_DIR / f"{name}.yaml"))


def published(name: str) -> dict:
    """The seed paper's figures for a preset: params_m, macs_g, top1, source (and notes); img_s: its published
    GPU throughput (images/s), where the paper gives one."""
    return dict(_preset_documents()[name].get("published", {}))


@dataclass(frozen=True)
class MacsClass:
    """A MACs class the presets define: the presets of similar MACs, and the range of MACs it covers (low, high]."""

    presets: tuple[str, ...]
    low: float
    high: float
    macs: tuple[float, ...]  # the presets' published MACs

    @property
    def label(self) -> str:
        """The presets' range: '0.61-0.86G'."""
        return f"{min(self.macs) / 1e9:.2f}-{max(self.macs) / 1e9:.2f}G"

    def holds(self, macs: float) -> bool:
        return self.low < macs <= self.high


def macs_classes(gap: float = 2.0) -> list[MacsClass]:
    """The MACs classes the presets define, from their published MACs (which they reproduce within 5%): sorted
    by MACs, a new class wherever a preset has more than `gap` times the MACs of the one before (the seeds'
    micro networks at 0.6-0.9G, their tiny ones at 3.7-4.8G). Neighbouring classes meet halfway between them
    on a log scale; the outer ones reach as far beyond their presets (a single class: `gap` either side)."""
    ranked = sorted((published(n)["macs_g"] * 1e9, n) for n in preset_names() if published(n).get("macs_g"))
    groups: list[list[tuple[float, str]]] = []
    for macs, name in ranked:
        if groups and macs <= gap * groups[-1][-1][0]:
            groups[-1].append((macs, name))
        else:
            groups.append([(macs, name)])
    # neighbouring classes meet at the geometric mean of their facing presets; the outer ends reach as far
    meets = [math.sqrt(a[-1][0] * b[0][0]) for a, b in zip(groups, groups[1:])]
    down = meets[0] / groups[0][-1][0] if meets else gap  # the first class reaches as far below its presets as above
    up = groups[-1][0][0] / meets[-1] if meets else gap  # the last one as far above as below
    first, last = groups[0][0][0] / down, groups[-1][-1][0] * up
    classes = []
    for i, group in enumerate(groups):
        low = meets[i - 1] if i else first
        high = meets[i] if i < len(meets) else last
        classes.append(MacsClass(tuple(n for _, n in group), low, high, tuple(m for m, _ in group)))
    return classes


def preset_by_id() -> dict[str, str]:
    return {preset(name).id: name for name in preset_names()}


def load_axes() -> None:
    """Register the built-in axis values (searchspace.axes), which a spec names and whose fields it holds.
    They import torch, so the modules that only read studies load them when they first parse a spec; the
    spec itself never imports them (they import its registries)."""
    import searchspace.axes  # noqa: F401  (registers on import)


def spec_from_data(data: Any, source: str) -> ArchSpec:
    """An ArchSpec from parsed data: a spec mapping, or an exported model config holding one under `spec`."""
    load_axes()
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        data = data["spec"]
    if not isinstance(data, dict):
        raise NasError(f"{source}: expected a mapping of spec keys, got {type(data).__name__}")
    try:
        return ArchSpec.model_validate(data)
    except ValidationError as err:
        raise NasError(format_validation_error(err, source, ArchSpec)) from None


def load_spec(ref: str) -> ArchSpec:
    """A spec from a preset name or a YAML/JSON file (a spec, or an exported model config)."""
    if ref in _preset_documents():
        return preset(ref)
    path = Path(ref)
    if not path.exists():
        raise NasError(f"{ref!r} is neither a preset ({', '.join(preset_names())}) nor a spec file")
    return spec_from_data(read_document(path), str(path))
