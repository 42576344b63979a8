"""Predicted latency for one device: a file of measured points and parts, and two predictors fitted on them,
chosen by how well they predict points they were not fitted on (`nas latency build`; the search's latency cost).

A network is cut into parts (`parts`: the stem, each stage's block at its map size and width - a shifted block
apart from an unshifted one -, each downsampling, the head), each keyed from the spec alone; a network's ms is
`Network`: scale * (sum of its parts' ms) + overhead, fitted over the measured networks (what the parts leave
out: position embeddings, stage norms, Python between modules, caches).
- `lut`: an FBNet-style lookup table: every distinct part timed once at its input shape, summed.
- `model`: a part's ms estimated by a linear model of its features from the closed-form costs (`part_features`:
  MACs, elements touched and calls by kind - each mixer's by its connectivity and by its dynamic weight, the
  FFN's dense and depth-wise MACs, the stem, downsampling and head apart, the block's layout), fitted by
  non-negative least squares on relative error over the measured parts (every coefficient is a time per unit).
A measured point is answered as measured. Fresh draws of a large space share few parts with the table, so the
model answers them (with the LUT kept, measured parts are used where the table has them).

Predicting reads the file and does arithmetic on the closed-form costs: no model is built, no tensor made
(`blocks` and `mixer` are imported for their `*_cost` functions). Building imports `searchspace.latency`,
which times with torch. Never imports Ray, Optuna or the layers above.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import NasError
from .geometry import canonical_mixer, digest, feature_sizes, is_shifted

FORMAT = "nas-latency-table/1"
PREDICTORS = ("lut", "model")
WITHIN = 0.10  # the share of predictions within 10% of the measurement is reported


# --- a network's parts: the lookup table's keys, from the spec alone ----------------------------------------
@dataclass(frozen=True)
class Part:
    """One piece of a network at its input shape; `key` names it in the table, `data` rebuilds it."""

    key: str
    kind: str  # stem, block, downsample, head
    what: str
    data: dict = field(compare=False, repr=False)


def _block_parts(spec, stage_index: int, size: tuple[int, int]) -> dict[bool, Part]:
    """The stage's block unshifted (False) and, where a mixer shifts on this map, shifted (True)."""
    from .geometry import local_geometry

    stage = spec.stages[stage_index]
    body = stage.model_dump(mode="json", exclude_none=True)
    body.pop("depth")
    body.pop("pos_embed", None)
    arch = {"norm": spec.norm, "act": spec.act, "layer_scale": spec.layer_scale}
    variants = [False]
    if stage.depth > 1 and any(local_geometry(m, size, True)[1] for _, m, _ in stage.mixer_widths()):
        variants.append(True)
    out = {}
    for shifted in variants:
        block = dict(body)
        for key in ("mixer", "second_mixer"):
            if key in block:
                mixer = canonical_mixer(block[key], size, depth=2)
                if "shift" in mixer:
                    mixer["shift"] = bool(shifted and mixer["shift"])
                block[key] = mixer
        data = {"part": "block", "stage": block, "arch": arch, "size": list(size)}
        what = f"stage {stage_index + 1} block {stage.dim} @ {size[0]}x{size[1]}" + (" shifted" if shifted else "")
        out[shifted] = Part(digest(data), "block", what, data)
    return out


def parts(spec, img_size: int = 224, num_classes: int = 1000, in_chans: int = 3) -> list[tuple[Part, int]]:
    """(part, how many times the network runs it), in the network's order."""
    sizes = feature_sizes(spec.stem, len(spec.stages), img_size, 4)
    dims = [s.dim for s in spec.stages]
    stem = {"part": "stem", "stem": spec.stem, "extra": spec.stem_extra_convs, "dim": dims[0], "img": img_size, "in": in_chans}
    out = [(Part(digest(stem), "stem", f"stem {spec.stem} -> {dims[0]}", stem), 1)]
    for i, stage in enumerate(spec.stages):
        if i:
            down = {"part": "downsample", "kind": spec.downsample, "cin": dims[i - 1], "cout": dims[i], "size": list(sizes[i - 1])}
            out.append((Part(digest(down), "downsample", f"downsample {dims[i - 1]} -> {dims[i]}", down), 1))
        blocks = _block_parts(spec, i, sizes[i])
        if True in blocks:
            shifted = sum(is_shifted(b) for b in range(stage.depth))
            out += [(blocks[False], stage.depth - shifted), (blocks[True], shifted)]
        else:
            out.append((blocks[False], stage.depth))
    head = {
        "part": "head", "stage_norm": spec.stage_norm, "head_ratio": spec.head_ratio, "head_width": spec.head_width,
        "dim": dims[-1], "size": list(sizes[-1]), "classes": num_classes,
    }
    out.append((Part(digest(head), "head", f"head {dims[-1]} -> {num_classes}", head), 1))
    return out


def build_part(part: Part, in_chans: int = 3):
    """The module of a part and an input of its shape (batch 1), initialised as the network initialises it."""
    import torch

    from .blocks import Block, Head, Stem, downsample
    from .model import _init_weights
    from .spec import ArchSpec

    d = part.data
    torch.manual_seed(0)
    if d["part"] == "stem":
        arch = ArchSpec.model_validate({"stem": d["stem"], "stem_extra_convs": d["extra"], "stages": [_stub(d["dim"])]})
        module, example = Stem(arch, d["in"], d["dim"], 4), torch.randn(1, d["in"], d["img"], d["img"])
    elif d["part"] == "block":
        stage = {**d["stage"], "depth": 2}
        arch = ArchSpec.model_validate({**{k: v for k, v in d["arch"].items() if v is not None}, "stages": [stage]})
        shifted = any(stage.get(k, {}).get("shift") for k in ("mixer", "second_mixer"))
        module = Block(arch.stages[0], stage["dim"], tuple(d["size"]), shifted, arch, 0.0)
        example = torch.randn(1, *d["size"], stage["dim"])
    elif d["part"] == "downsample":
        module, example = downsample(d["kind"], d["cin"], d["cout"]), torch.randn(1, *d["size"], d["cin"])
    else:
        arch = ArchSpec.model_validate({
            "stage_norm": d["stage_norm"], "head_ratio": d["head_ratio"], "head_width": d["head_width"],
            "stages": [_stub(d["dim"])],
        })
        module, example = Head(arch, d["dim"], d["classes"]), torch.randn(1, *d["size"], d["dim"])
    module.apply(_init_weights)
    for m in module.modules():
        if hasattr(m, "init_weights"):
            m.init_weights()
    return module, example


def _stub(dim: int) -> dict:
    """A one-stage spec body for parts that read only network-level fields."""
    return {"depth": 1, "dim": dim, "mixer": {"connectivity": "sliding", "dynamic": "static", "kernel": 3, "heads": dim}}


# --- the model's features: each part's, from the closed-form costs -----------------------------------------
def part_features(spec, img_size: int = 224, num_classes: int = 1000, in_chans: int = 3) -> list[tuple[dict, int]]:
    """The linear model's features of each part of a spec, in `parts`' order, with how many times each runs."""
    from .blocks import downsample_cost, head_cost, stem_cost
    from .geometry import local_geometry

    sizes = feature_sizes(spec.stem, len(spec.stages), img_size, 4)
    dims = [s.dim for s in spec.stages]
    stem = stem_cost(spec, in_chans, dims[0], (img_size, img_size), 4).macs
    extra = spec.stem_extra_convs or 0
    out = [({"stem macs": stem, "stem elements": 2 * sizes[0][0] * sizes[0][1] * dims[0], "stem calls": 2 + 3 * extra}, 1)]
    for i, (stage, size) in enumerate(zip(spec.stages, sizes)):
        pixels = size[0] * size[1]
        if i:
            down = downsample_cost(spec.downsample, dims[i - 1], dims[i], pixels).macs
            out.append(({"downsample macs": down, "downsample elements": pixels * (dims[i] + 4 * dims[i - 1]), "downsample calls": 1}, 1))
        shifted = sum(is_shifted(b) for b in range(stage.depth))
        plain = _block_features(stage, size, False)
        if shifted and any(local_geometry(m, size, True)[1] for _, m, _ in stage.mixer_widths()):  # as `_block_parts`
            out += [(plain, stage.depth - shifted), (_block_features(stage, size, True), shifted)]
        else:  # no mixer shifts on this map: one part, as in `parts`
            out.append((plain, stage.depth))
    last = sizes[-1][0] * sizes[-1][1]
    head = head_cost(spec, dims[-1], last, num_classes).macs
    out.append(({"head macs": head, "head elements": last * dims[-1], "head calls": 1}, 1))
    return out


def _block_features(stage, size: tuple[int, int], shifted: bool) -> dict[str, float]:
    """A block's: each mixer's MACs, elements and calls by its connectivity and by its dynamic weight; the
    FFN's dense and depth-wise MACs; the elements its norms, residuals and activations touch; its layout."""
    from .blocks import feed_forward_cost, ffn_hidden, parallel_cost
    from .geometry import local_geometry
    from .mixer import mixer_cost

    pixels = size[0] * size[1]
    f: dict[str, float] = {}
    hidden = ffn_hidden(stage.dim, stage.ffn_ratio)
    local = pixels * hidden * stage.ffn_local**2 if stage.ffn_local else 0
    mixed = 0
    for key, mixer, width in stage.mixer_widths():
        if stage.layout == "parallel":  # MixFormer's branches: inputs projected by the block, outputs as parallel_cost says
            out_dim = None if key == "mixer" else stage.dim // 2
            cost = mixer_cost(mixer, width, size, shifted=shifted, value_proj=False, out_dim=out_dim)
        else:
            cost = mixer_cost(mixer, width, size, shifted=shifted)
        mixed += cost.macs
        for axis in (f"connectivity {mixer.connectivity}", f"dynamic {mixer.dynamic}"):
            f[f"macs {axis}"] = f.get(f"macs {axis}", 0.0) + cost.macs
            f[f"elements {axis}"] = f.get(f"elements {axis}", 0.0) + pixels * width
            f[f"calls {axis}"] = f.get(f"calls {axis}", 0.0) + 1
        if local_geometry(mixer, size, shifted)[1]:
            f["elements shift"] = f.get("elements shift", 0.0) + pixels * width
    dense = feed_forward_cost(stage, stage.dim, pixels).macs - local
    if stage.layout == "parallel":
        dense += parallel_cost(stage, stage.dim, size, shifted).macs - mixed
    elements = pixels * (3 * stage.dim + 2 * hidden)
    f.update({
        "macs dense": dense, "macs ffn depth-wise": local, "elements": elements,
        "calls": 8 + 3 * bool(stage.ffn_local) + 4 * stage.ffn_se + 8 * (stage.layout == "parallel"), "block calls": 1,
        f"elements layout {stage.layout}": elements, f"calls layout {stage.layout}": 1,
    })
    return f


@dataclass
class LinearModel:
    """ms = features . coef, the coefficients non-negative (each a time per unit of its feature)."""

    names: list[str]
    coef: list[float]

    def __post_init__(self):
        self._by_name = dict(zip(self.names, self.coef))

    def predict_features(self, feats: dict[str, float]) -> float:
        by_name = self._by_name
        return float(sum(by_name.get(n, 0.0) * v for n, v in feats.items()))

    @classmethod
    def fit(cls, rows: list[dict[str, float]], ms: np.ndarray) -> "LinearModel":
        from scipy.optimize import nnls

        names = sorted({n for r in rows for n in r})
        x = np.array([[r.get(n, 0.0) for n in names] for r in rows])
        scale = np.where(x.max(0) > 0, x.max(0), 1.0)  # columns of MACs and of 1s on one footing for NNLS
        # relative error: each row divided by its own latency, so a 0.1 ms head counts as much as a 10 ms block
        coef, _ = nnls(x / scale / ms[:, None], np.ones(len(ms)), maxiter=50 * len(names))
        return cls(names, list(coef / scale))

    def to_dict(self) -> dict:
        return dict(zip(self.names, self.coef))

    @classmethod
    def from_dict(cls, data: dict) -> "LinearModel":
        return cls(list(data), list(data.values()))


@dataclass(frozen=True)
class Network:
    """A network's ms from the sum of its parts' ms: scale * sum + overhead_ms, fitted over measured networks
    (what the sum leaves out: position embeddings and stage norms, Python between modules, caches)."""

    scale: float = 1.0
    overhead_ms: float = 0.0

    def __call__(self, total: float) -> float:
        return self.scale * total + self.overhead_ms

    @classmethod
    def fit(cls, sums: np.ndarray, ms: np.ndarray) -> "Network":
        design = np.stack([sums, np.ones_like(sums)], 1) / ms[:, None]  # relative error, as the parts
        (scale, overhead), *_ = np.linalg.lstsq(design, np.ones_like(ms), rcond=None)
        return cls(float(scale), float(overhead))


def _modelled_sums(model: LinearModel, featured: list[list[tuple[dict, int]]]) -> np.ndarray:
    return np.array([sum(n * model.predict_features(f) for f, n in rows) for rows in featured])


# --- the table ----------------------------------------------------------------------------------------------
@dataclass
class LatencyTable:
    """One device's measured points and predictors; `predict(spec)` in ms at the protocol's batch 1.

    `points`: spec id -> {name, macs, ms, iqr_ms, runs, spec}. `parts`: part key -> {what, ms, iqr_ms}.
    `network`: a network's ms from the sum of its parts'. `linear`: the model's coefficients. `predictor`: which answers
    a spec that was not measured: lut (measured parts, the model's estimate for a part not in the table) or
    model (every part estimated). `evaluation`: how each did on points it was not fitted on, and the
    measurement's own noise.
    """

    device: dict
    protocol: dict
    points: dict[str, dict]
    parts: dict[str, dict]
    network: Network
    linear: LinearModel
    predictor: str
    evaluation: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    # -- reading and writing --
    @classmethod
    def load(cls, path) -> "LatencyTable":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise NasError(f"{path}: no such latency table (write one with nas latency build -o {path})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NasError(f"{path}: not a latency table ({exc.__class__.__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NasError(f"{path}: not a latency table of format {FORMAT} (written by nas latency build)")
        return cls(
            device=data["device"], protocol=data["protocol"], points=data["points"], parts=data["parts"],
            network=Network(**data["network"]), linear=LinearModel.from_dict(data["model"]), predictor=data["predictor"],
            evaluation=data.get("evaluation", {}), provenance=data.get("provenance", {}),
        )

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "device": self.device, "protocol": self.protocol, "predictor": self.predictor,
            "evaluation": self.evaluation, "provenance": self.provenance,
            "network": {"scale": self.network.scale, "overhead_ms": self.network.overhead_ms},
            "model": self.linear.to_dict(), "parts": self.parts, "points": self.points,
        }

    def save(self, path) -> None:
        try:
            Path(path).write_text(json.dumps(self.to_dict(), indent=1))
        except OSError as exc:
            raise NasError(f"cannot write {path}: {exc.strerror or exc}") from None

    # -- predicting --
    @property
    def _geometry(self) -> tuple[int, int]:
        return self.protocol.get("img_size", 224), self.protocol.get("num_classes", 1000)

    def measured(self, spec) -> float | None:
        """The measured ms of a spec (by id: specs that build the same network share it), or None."""
        point = self.points.get(spec.id)
        return point["ms"] if point else None

    def predict_with(self, predictor: str, spec) -> float | None:
        """One predictor's ms for a spec, never its measurement (lut: None when a part is not in the table)."""
        img_size, num_classes = self._geometry
        if predictor == "lut":
            total = 0.0
            for part, n in parts(spec, img_size, num_classes):
                if part.key not in self.parts:
                    return None
                total += n * self.parts[part.key]["ms"]
            return self.network(total)
        return self.network(sum(n * self.linear.predict_features(f) for f, n in part_features(spec, img_size, num_classes)))

    def _lut_with_model(self, spec) -> tuple[float, int]:
        """The LUT's ms with the model's estimate for each part not in the table, and how many parts that is."""
        img_size, num_classes = self._geometry
        total, modelled = 0.0, 0
        for (part, n), (f, _) in zip(parts(spec, img_size, num_classes), part_features(spec, img_size, num_classes)):
            entry = self.parts.get(part.key)
            if entry is None:
                modelled += 1
                total += n * self.linear.predict_features(f)
            else:
                total += n * entry["ms"]
        return self.network(total), modelled

    def predict(self, spec) -> float:
        """ms at batch 1 on the table's device: measured if it was, else by the table's predictor."""
        ms = self.measured(spec)
        if ms is not None:
            return ms
        if self.predictor == "lut":
            return self._lut_with_model(spec)[0]
        return self.predict_with("model", spec)

    def source(self, spec) -> str:
        """What answers `predict(spec)`: measured, lut (every part measured), lut+model (some parts estimated) or model."""
        if spec.id in self.points:
            return "measured"
        if self.predictor == "lut":
            return "lut" if self._lut_with_model(spec)[1] == 0 else "lut+model"
        return "model"

    def unseen(self, spec) -> list[str]:
        """The spec's features the model was never fitted on (its estimate leaves their cost out)."""
        img_size, num_classes = self._geometry
        known = set(self.linear.names)
        return sorted({n for f, _ in part_features(spec, img_size, num_classes) for n, v in f.items() if v and n not in known})

    def covers(self, specs: Iterable) -> float:
        """The share of specs whose every part is in the table."""
        specs = list(specs)
        return sum(self.predict_with("lut", s) is not None for s in specs) / max(1, len(specs))


# --- building -----------------------------------------------------------------------------------------------
def kendall_tau(a, b) -> float:
    """Kendall's tau-b (scipy); NaN for fewer than two pairs."""
    from scipy.stats import kendalltau

    if len(a) < 2:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def score(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """Kendall tau and the share within 10% of the measurement, and the median relative error."""
    rel = np.abs(predicted / measured - 1)
    return {
        "n": int(len(measured)), "tau": round(kendall_tau(predicted, measured), 4),
        "within_10pct": round(float(np.mean(rel <= WITHIN)), 4), "median_error": round(float(np.median(rel)), 4),
    }


def folds_of(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [np.array(sorted(order[i::k])) for i in range(k)]


def evaluate(ms: np.ndarray, sums: np.ndarray, featured: list, part_ms: list[dict[str, float]], keyed: list,
             k: int, seed: int) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of both predictors: each point predicted by a fit on the other folds. The LUT
    sums a held-out point's measured parts; the model estimates every part of it, fitted only on parts of the
    other points that no held-out point contains."""
    predicted = {"lut": np.zeros_like(ms), "model": np.zeros_like(ms)}
    for held in folds_of(len(ms), k, seed):
        train = np.setdiff1d(np.arange(len(ms)), held)
        lut = Network.fit(sums[train], ms[train])
        predicted["lut"][held] = [lut(sums[i]) for i in held]
        unseen = {p.key for i in held for p, _ in keyed[i]}
        rows = {p.key: (f, part_ms[p.key]) for i in train for (p, _), (f, _) in zip(keyed[i], featured[i]) if p.key not in unseen}
        linear = LinearModel.fit([f for f, _ in rows.values()], np.array([t for _, t in rows.values()]))
        predicted["model"][held] = [lut(s) for s in _modelled_sums(linear, [featured[i] for i in held])]
    return predicted


def choose(evaluation: dict) -> str:
    """The predictor with the better held-out rank agreement (tau to two decimals), then share within 10%."""
    return max(PREDICTORS, key=lambda p: (round(evaluation[p]["tau"], 2), evaluation[p]["within_10pct"]))


def build(
    specs: list, protocol=None, *, part_protocol=None, folds: int = 5, seed: int = 0, say: Callable[[str], None] = print,
    provenance: dict | None = None,
) -> LatencyTable:
    """Measure every spec and every distinct part of them on this machine, then `fit`."""
    from .latency import Device, Protocol, measure_latency, time_module

    protocol = protocol or Protocol(throughput_batch=0)
    part_protocol = part_protocol or protocol
    _check_folds(len({s.id for s in specs}), folds)
    started = time.perf_counter()
    device = Device.here(protocol)
    points: dict[str, dict] = {}
    for i, spec in enumerate(specs, 1):
        if spec.id in points:
            continue
        result = measure_latency(spec, protocol)
        points[spec.id] = {
            "name": spec.name, "macs": result.macs, "ms": round(result.ms, 4), "iqr_ms": round(result.latency.iqr_ms, 4),
            "runs": result.latency.runs, "load_average": list(result.device.load_average), "spec": spec.to_dict(),
        }
        say(f"network {i}/{len(specs)} {spec.label}: {result.ms:.2f} ms (IQR {result.latency.iqr_ms:.2f})")
    networks_seconds = time.perf_counter() - started
    distinct = {p.key: p for s in specs for p, _ in parts(s, protocol.img_size, protocol.num_classes)}
    measured_parts: dict[str, dict] = {}
    channels_first = replace(part_protocol, channels_last=False)  # a part's input is channels-last already
    for i, part in enumerate(distinct.values(), 1):
        module, example = build_part(part)
        timing = time_module(module, example, part_protocol if part.kind == "stem" else channels_first)
        measured_parts[part.key] = {"what": part.what, "ms": round(timing.median_ms, 5), "iqr_ms": round(timing.iqr_ms, 5)}
        if i % 25 == 0 or i == len(distinct):
            say(f"parts {i}/{len(distinct)} timed")
    provenance = {
        **(provenance or {}), "part_protocol": part_protocol.to_dict(), "networks_seconds": round(networks_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1), "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return fit(points, measured_parts, device.to_dict(), protocol.to_dict(), folds=folds, seed=seed, provenance=provenance)


def _check_folds(points: int, folds: int) -> None:
    if points < max(4, folds):
        raise NasError(f"{points} points cannot be fitted and held out in {folds} folds: measure at least {max(4, folds)}")


def fit(points: dict[str, dict], measured_parts: dict[str, dict], device: dict, protocol: dict, *, folds: int = 5,
        seed: int = 0, provenance: dict | None = None) -> LatencyTable:
    """Both predictors fitted on measured points and parts, evaluated on held-out points (k-fold: each point
    predicted by a fit on the others), the better one kept. Refits a table's own measurements too."""
    from .presets import spec_from_data

    _check_folds(len(points), folds)
    img_size, num_classes = protocol.get("img_size", 224), protocol.get("num_classes", 1000)
    ids = list(points)
    specs = [spec_from_data(points[i]["spec"], f"point {i}") for i in ids]
    ms = np.array([points[i]["ms"] for i in ids])
    keyed = [parts(s, img_size, num_classes) for s in specs]
    featured = [part_features(s, img_size, num_classes) for s in specs]
    part_ms = {key: entry["ms"] for key, entry in measured_parts.items()}
    sums = np.array([sum(n * part_ms[p.key] for p, n in k) for k in keyed])
    predicted = evaluate(ms, sums, featured, part_ms, keyed, folds, seed)
    evaluation = {p: score(predicted[p], ms) for p in PREDICTORS}
    spreads = np.array([points[i]["iqr_ms"] / points[i]["ms"] for i in ids])
    evaluation["measurement"] = {
        "median_relative_iqr": round(float(np.median(spreads)), 4),
        "note": "a prediction cannot be judged more finely than the measurement's own spread",
    }
    evaluation["folds"] = folds
    evaluation["held_out"] = {p: [round(float(x), 4) for x in predicted[p]] for p in PREDICTORS}
    rows = {p.key: f for k, fs in zip(keyed, featured) for (p, _), (f, _) in zip(k, fs)}
    linear = LinearModel.fit(list(rows.values()), np.array([part_ms[key] for key in rows]))
    return LatencyTable(
        device=device, protocol=protocol, points=points, parts=measured_parts, network=Network.fit(sums, ms),
        linear=linear, predictor=choose(evaluation),
        evaluation=evaluation, provenance={**(provenance or {}), "seed": seed},
    )


def draw(space, budget: int, points: int, seed: int, presets: bool = True) -> list:
    """The presets within the budget and `points` points of the space drawn within it (seeded)."""
    from .model import count
    from .presets import preset, preset_names

    chosen = [preset(n) for n in preset_names() if count(preset(n)).macs <= budget] if presets else []
    seen = {s.id for s in chosen}
    drawn = [s for s in space.sample_within(budget, points + len(chosen), seed) if s.id not in seen]
    return chosen + drawn[:points]


__all__ = [
    "FORMAT", "LatencyTable", "LinearModel", "Network", "Part", "build", "build_part", "draw", "fit", "part_features", "parts",
]
