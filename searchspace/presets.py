"""The seeds' hand-made networks as named points of the space (DESIGN §1.3), and spec loading: where the
built-in axis values are registered before a spec names them.

Each preset is a data file in presets/: the spec, plus the published figures it must reproduce.
Imports searchspace's spec and errors, and (on first use) searchspace.axes.
"""

from __future__ import annotations

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
