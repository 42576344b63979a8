"""The benchmark table: a fixed, seeded set of points of a space trained once (`nas bench build`), their
learning curves and zero-cost scores, and their latency measured on a device (`nas bench latency`), exported
as one file; nas.replay replays searches against it.

Imports optuna, searchspace, trials and nas.search/nas.study; Ray only inside the build (nas.search).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from dashboards.pareto import Box, as_losses, hypervolume, nondominated
from searchspace import ArchSpec, NasError, SearchSpace, format_budget, format_macs, load_space
from searchspace.space import SPACE_DIR
from trials import ProxyRecipe, data_name, load_proxy_data, zero_cost_scores
from trials import record
from trials.goals import OBJECTIVES

from .search import SearchOptions
from .study import fail_stale_trials, open_search_study, open_storage, settles_its_point, space_digest, storage_errors

DEFAULT_TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "table-unified-4.5G.json.gz"
FORMAT = "nas-bench-table/1"
# A replay's default time budget: the compute of a default `nas search` (24 trials), i.e. the seconds
# `workers` need for that many full trainings of an average table point. Kept well below the table's
# size: a budget that could train the whole table would end every strategy on the same front.
DEFAULT_TRAININGS = SearchOptions.trials
# The objectives a table point can be judged on, as a replay names them (`nas bench run --objectives`): proxy
# top-1, MACs, and the batch-1 latency the table measured (`nas bench latency`), each the study objective of
# trials.goals.OBJECTIVES (its direction, the key a trial and the trainable's results carry it under) it names.
OBJECTIVE_KEYS = {"top1": record.PROXY_TOP1, "macs": record.MACS, "latency": record.LATENCY_MS}
DEFAULT_OBJECTIVES = ("top1", "macs")
# The class of networks of similar MACs where MACs rank latency worst (benchmarks/latency.py's): 2.4-4.8 GMACs
LATENCY_CLASS = (2.4e9, 4.8e9)


# --- building the table --------------------------------------------------------------------------------------
def table_points(space: SearchSpace, budget: int, n: int, seed: int, recipe: ProxyRecipe) -> list[ArchSpec]:
    """The table's points: the first `n` seeded draws of `space` within `budget` whose proxy networks differ
    (two specs that train one proxy network are one point). A larger `n` extends a smaller table."""
    points, seen = [], set()
    for spec in space.sample_within(budget, 2 * n, seed):
        proxy_id = recipe.proxy_id(spec)
        if proxy_id not in seen:
            seen.add(proxy_id)
            points.append(spec)
            if len(points) == n:
                break
    return points


def build_table(opts: SearchOptions, points: int, export: str | None = None, console=None) -> dict:
    """Train the table's points as a search whose queue holds exactly them (`opts.scheduler` none: every
    point trains fully, evaluated every half epoch, so any scheduler's rungs are in its curve), score their zero-cost proxies, and export the table
    when `export` names a file. Rerun, it continues: a settled point is never trained again."""
    from .scheduler import EVALUATIONS_PER_EPOCH
    from .search import run_search

    say = (lambda text: console.print(text, markup=False)) if console else print
    started = time.perf_counter()
    space = load_space(opts.space)
    specs = table_points(space, opts.budget, points, opts.seed, opts.recipe)
    if len(specs) < points:
        say(f"{space.name} has only {len(specs)} distinct proxy networks within {format_macs(opts.budget)} MACs")
    name = opts.study_name or f"bench-{space.name}-{format_budget(opts.budget)}-{data_name(opts.data)}"
    storage = open_storage(opts.storage)
    with storage_errors(opts.storage):
        study, _ = open_search_study(storage, name, space, opts.budget, data_name(opts.data), opts.recipe, "bench")
        fail_stale_trials(study)
        todo = _untrained(study, specs, opts.recipe)
    say(f"table {name!r}: {len(specs)} points, {len(specs) - len(todo)} trained, {len(todo)} to train")
    if todo:
        run_search(
            replace(opts, study_name=name, queue=todo, draws=False, role="bench", trials=len(todo), scheduler="none", baselines=False,
                    evaluate_at=tuple(k / EVALUATIONS_PER_EPOCH for k in range(1, EVALUATIONS_PER_EPOCH * opts.recipe.epochs))),
            console,
        )
    with storage_errors(opts.storage):
        study = optuna.load_study(study_name=name, storage=storage)
        scored = _score_zero_cost(study, specs, opts, say)
        table = Table.from_study(study, space, specs)
    summary = {
        "study": name,
        "points": len(table.points),
        "complete": sum(p.complete for p in table.points),
        "failed": sum(not p.complete for p in table.points),
        "trained_this_run": len(todo),
        "zero_cost_scored_this_run": scored,
        "training_seconds": round(sum(p.seconds for p in table.points), 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if export:
        size = table.save(export)
        summary.update(export=str(export), export_bytes=size)
    return summary


def _untrained(study: optuna.Study, specs: list[ArchSpec], recipe: ProxyRecipe) -> list[ArchSpec]:
    settled = {t.user_attrs.get(record.PROXY_ID) for t in study.get_trials(deepcopy=False) if settles_its_point(t)}
    return [s for s in specs if recipe.proxy_id(s) not in settled]


def _score_zero_cost(study: optuna.Study, specs: list[ArchSpec], opts: SearchOptions, say) -> int:
    """Zero-cost scores of every point that has none yet, as study attributes (a finished trial takes no
    more attributes): `zero_cost:<id>`, the network's weights as training starts them (seed = recipe's)."""
    stored = study.user_attrs
    missing = [s for s in specs if f"{record.ZERO_COST}:{s.id}" not in stored]
    if not missing:
        return 0
    r = opts.recipe
    data = load_proxy_data(opts.data, r.resolution, r.subset, r.val_size, r.seed, r.held_out_from)
    say(f"zero-cost proxies for {len(missing)} points")
    for spec in missing:
        study.set_user_attr(f"{record.ZERO_COST}:{spec.id}", zero_cost_scores(spec, data, r, seed=r.seed))
    return len(missing)


# --- the table ------------------------------------------------------------------------------------------------
@dataclass
class TablePoint:
    """One trained point: its learning curve (record.CURVE_KEYS at every evaluation) and zero-cost scores;
    `fail_reason` when its training failed (then the curve holds the evaluations before the failure)."""

    id: str
    proxy_id: str
    spec: dict
    params: int
    macs: int
    curve: dict
    zero_cost: dict
    fail_reason: str | None = None
    # batch-1 latency of the full-size network on the table's latency device (Table.latency): ms, iqr_ms, runs,
    # load_average (1, 5, 15 min, as it was measured); None until `nas bench latency` measured it
    latency: dict | None = None

    @property
    def complete(self) -> bool:
        return self.fail_reason is None

    @property
    def latency_ms(self) -> float | None:
        return self.latency["ms"] if self.latency else None

    def values(self, objectives: tuple[str, ...] = DEFAULT_OBJECTIVES) -> tuple[float, ...]:
        """Its values of `objectives` (names of OBJECTIVE_KEYS), in their directions."""
        by_key = {record.PROXY_TOP1: self.top1, record.MACS: self.macs, record.LATENCY_MS: self.latency_ms}
        return tuple(by_key[key] for key in objective_keys(objectives))

    @property
    def top1(self) -> float:
        return self.curve["proxy_top1"][-1]

    @property
    def objectives(self) -> tuple[float, ...]:
        """Its values of the study's objectives (record.OBJECTIVES, in record.DIRECTIONS)."""
        return (self.top1, self.macs)

    @property
    def seconds(self) -> float:
        """Training seconds: all of them, or until the failure's last evaluation."""
        return self.curve["train_seconds"][-1] if self.curve["train_seconds"] else 0.0

    @property
    def wall_seconds(self) -> float:
        """What it cost a worker, as far as it ran: the wall-clock seconds of its last evaluation (tables built
        before they were recorded: its training seconds)."""
        clock = self.curve.get(record.WALL_SECONDS) or self.curve["train_seconds"]
        return clock[-1] if clock else 0.0


@dataclass
class Table:
    """A benchmark table: how its points were trained, and the points."""

    space: str  # a shipped space's name, else the space file
    space_sha256: str
    budget: int
    data: str
    recipe: ProxyRecipe
    evaluations_per_epoch: int
    study: str
    points: list[TablePoint]
    format: str = FORMAT
    # where and how the points' latency was measured (`nas bench latency`): device (searchspace.latency.Device),
    # protocol (its Protocol) and the runs that measured it (date, points, seconds, load average at start and
    # end); None in a table without latency, which reads as before
    latency: dict | None = None
    coordinates: dict | None = field(default=None, repr=False, compare=False)  # nas.replay's cache

    @classmethod
    def from_study(cls, study: optuna.Study, space: SearchSpace, specs: list[ArchSpec]) -> Table:
        recipe = record.stored_recipe(study)
        stored = study.user_attrs
        by_proxy: dict[str, optuna.trial.FrozenTrial] = {}
        for t in study.get_trials(deepcopy=False):
            if settles_its_point(t) and t.state != TrialState.RUNNING:
                known = by_proxy.get(t.user_attrs[record.PROXY_ID])
                if known is None or t.state == TrialState.COMPLETE:
                    by_proxy[t.user_attrs[record.PROXY_ID]] = t
        points, missing = [], 0
        for spec in specs:
            t = by_proxy.get(recipe.proxy_id(spec))
            if t is None:
                missing += 1
                continue
            points.append(TablePoint(
                id=spec.id, proxy_id=t.user_attrs[record.PROXY_ID], spec=spec.to_dict(), params=t.user_attrs[record.PARAMS],
                macs=t.user_attrs[record.MACS], curve=t.user_attrs.get(record.CURVE) or {k: [] for k in record.CURVE_KEYS},
                zero_cost=stored.get(f"{record.ZERO_COST}:{spec.id}", {}),
                fail_reason=None if t.state == TrialState.COMPLETE else t.user_attrs.get(record.FAIL_REASON, "failed"),
            ))
        if missing:
            raise NasError(f"study {study.study_name!r} has {missing} of {len(specs)} table points untrained: rerun nas bench build")
        from .scheduler import EVALUATIONS_PER_EPOCH

        shipped = Path(space.source).resolve() == (SPACE_DIR / f"{space.name}.yaml").resolve()
        return cls(
            space=space.name if shipped else space.source, space_sha256=space_digest(space),
            budget=stored[record.STUDY_BUDGET], data=stored[record.STUDY_DATA], recipe=recipe,
            evaluations_per_epoch=EVALUATIONS_PER_EPOCH, study=study.study_name, points=points,
        )

    @classmethod
    def of_search(cls, study: optuna.Study, space: SearchSpace) -> Table:
        """The points a search trained, in trial order, as a table to replay that search with (tests/test_bench.py
        checks that the replay makes the search's decisions): a point its scheduler stopped keeps the curve it
        ran, so a replay that trains it further raises (nas.replay)."""
        trained = [t for t in study.get_trials(deepcopy=False) if settles_its_point(t) and t.state != TrialState.RUNNING]
        table = cls.from_study(study, space, [record.spec_of(t) for t in trained])
        stopped = {t.user_attrs[record.PROXY_ID] for t in trained if t.state == TrialState.PRUNED}
        return replace(table, points=[replace(p, fail_reason=None) if p.proxy_id in stopped else p for p in table.points])

    def save(self, path: str | Path) -> int:
        """Write the table as gzipped JSON, whole or not at all (a new file renamed over the old: an interrupted
        `nas bench latency` leaves the last table written); returns its size in bytes."""
        document = asdict(replace(self, coordinates=None))
        del document["coordinates"]
        if document["latency"] is None:  # a table without latency is written as before it could have one
            del document["latency"]
        for point in document["points"]:
            if point["latency"] is None:
                del point["latency"]
        data = gzip.compress(json.dumps(document, sort_keys=True).encode(), mtime=0)  # same table, same bytes
        path = Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise NasError(f"cannot write {path}: {exc.strerror or exc}") from None
        return len(data)

    @classmethod
    def load(cls, path: str | Path) -> Table:
        try:
            document = json.loads(gzip.decompress(Path(path).read_bytes()))
        except FileNotFoundError:
            raise NasError(f"no benchmark table at {path}: build one with nas bench build --export {path}") from None
        except (OSError, EOFError, ValueError) as exc:
            raise NasError(f"{path} is not a benchmark table (gzipped JSON): {exc}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise NasError(f"{path} is not a benchmark table of format {FORMAT}")
        document["recipe"] = ProxyRecipe(**document["recipe"])
        document["points"] = [TablePoint(**p) for p in document["points"]]
        return cls(**document)

    # --- what a replay needs ----------------------------------------------------------------------------
    def load_space(self) -> SearchSpace:
        space = load_space(self.space)
        if space_digest(space) != self.space_sha256:
            raise NasError(
                f"the table was built on another version of {space.source} (sha256 {self.space_sha256[:12]}): "
                "rebuild it with nas bench build"
            )
        return space

    def point(self, spec_id: str) -> TablePoint:
        return next(p for p in self.points if p.id == spec_id)

    def trained(self) -> list[TablePoint]:
        """The points trained for every epoch (a table made from a search also holds points it stopped)."""
        return [p for p in self.points if p.complete and p.curve["progress"] and p.curve["progress"][-1] >= self.recipe.epochs]

    def mean_trial_seconds(self) -> float:
        """The wall-clock seconds of a full training, on average: the unit of a replay's budget."""
        return float(np.mean([p.wall_seconds for p in self.trained()] or [1.0]))

    def default_budget_seconds(self, workers: int) -> float:
        return DEFAULT_TRAININGS * self.mean_trial_seconds() / workers

    def full_trainings(self, budget_seconds: float, workers: int) -> int:
        """How many full trainings `workers` fit in `budget_seconds`: what `--trials` would be in a search."""
        return max(1, round(budget_seconds * workers / self.mean_trial_seconds()))

    def front(self, objectives: tuple[str, ...] = DEFAULT_OBJECTIVES) -> list[TablePoint]:
        """The table's Pareto front of fully trained points in `objectives` (default: most top-1, least MACs), by
        its second objective."""
        done = self.trained()
        on_front = nondominated(as_losses([p.values(objectives) for p in done], directions(objectives)))
        return sorted((p for p, keep in zip(done, on_front) if keep), key=lambda p: (p.values(objectives)[1:], -p.top1))

    def box(self, objectives: tuple[str, ...] = DEFAULT_OBJECTIVES) -> Box:
        """The box every hypervolume of this table in `objectives` is normalised to: its whole front's
        (dashboards.pareto)."""
        self.check_objectives(objectives)
        front = self.front(objectives)
        if not front:
            raise NasError("the table has no complete point")
        return Box.of([p.values(objectives) for p in front], directions(objectives))

    def reference_point(self, objectives: tuple[str, ...] = DEFAULT_OBJECTIVES) -> tuple[float, ...]:
        """The hypervolume's reference point in `objectives` (default: top-1, MACs), in their own units."""
        return self.box(objectives).reference_point()

    def hypervolume(self, points: list[TablePoint], objectives: tuple[str, ...] = DEFAULT_OBJECTIVES) -> float:
        """The hypervolume of `points` (their front) in `objectives`, in the table front's box in those objectives
        (dashboards.pareto.hypervolume)."""
        return hypervolume([p.values(objectives) for p in points], self.box(objectives))

    def check_objectives(self, objectives: tuple[str, ...]) -> None:
        """Refuse objectives the table cannot answer: an unknown name, or latency in a table not measured for it."""
        unknown = [name for name in objectives if name not in OBJECTIVE_KEYS]
        if unknown or len(set(objectives)) != len(objectives) or len(objectives) < 2 or objectives[0] != "top1":
            raise NasError(
                f"objectives {','.join(objectives)!r}: name top1 and then one or two of macs, latency, each once "
                "(e.g. top1,macs or top1,latency)"
            )
        if "latency" in objectives:
            missing = sum(p.latency is None for p in self.points)
            if missing:
                held = "no latency" if missing == len(self.points) else f"no latency for {missing} of its {len(self.points)} points"
                raise NasError(f"the table has {held}: measure it with nas bench latency (then the latency objective reads it)")


def objective_keys(objectives: tuple[str, ...]) -> tuple[str, ...]:
    """Objectives as a replay names them -> the study's (keys of trials.goals.OBJECTIVES)."""
    return tuple(OBJECTIVE_KEYS[name] for name in objectives)


def directions(objectives: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(OBJECTIVES[key][1] for key in objective_keys(objectives))


def parse_objectives(text: str) -> tuple[str, ...]:
    """`top1,latency` -> ("top1", "latency"); what a table can answer is checked by Table.check_objectives."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


# --- latency: the table's points measured on this machine ----------------------------------------------------
def measure_table_latency(path: str | Path, protocol, output: str | Path | None = None, fresh: bool = False,
                          progress=None, say=print, measured_in: str | Path | None = None) -> Table:
    """Measure the batch-1 latency of every point of the table at `path` (searchspace.latency's protocol: the
    full-size network, eval mode, median and interquartile range) and write it into the table, each point's
    beside its curve and the device and protocol once (Table.latency), to `output` (default: the table file).

    The table is written after every point, whole (Table.save), so an interrupted run keeps what it measured and
    a rerun measures only the rest; a rerun on another device or protocol is refused (its figures would not
    compare), as is one over a table whose points differ. `fresh`: every point is measured again. `progress`:
    called before the first point with (points measured already, points in all, None, None), then after each
    point with (points measured, points in all, the point, its latency block).
    `measured_in`: another table of this device and protocol (an earlier build of the same points, say): a point
    it measured (the same full-size network, by id) takes that measurement instead of being measured again, as
    latency does not depend on the proxy recipe a table was trained with; the run records how many it took."""
    from searchspace.latency import Device, measure_latency

    target = Path(output or path)
    resume = target.exists() and not fresh  # the table measured so far: the file written to (a new --output: none)
    table = Table.load(target if resume else path)
    if resume and output:
        source = Table.load(path)
        if [p.id for p in source.points] != [p.id for p in table.points] or source.study != table.study:
            raise NasError(f"{target} holds another table than {path}: give --fresh to overwrite it, or another --output")
    here = Device.here(protocol)
    wanted = {"device": {k: v for k, v in here.to_dict().items() if k in Device.HARDWARE}, "protocol": protocol.to_dict()}
    if not resume or table.latency is None:
        table.latency = {**wanted, "device": {**here.to_dict(), "load_average": list(here.load_average)}, "runs": []}
        for p in table.points:
            p.latency = None
    else:
        stored = table.latency
        had = {"device": {k: v for k, v in stored["device"].items() if k in Device.HARDWARE}, "protocol": stored["protocol"]}
        if had != wanted:
            differ = [f"{part} {k}: {had[part].get(k)!r} there, {wanted[part].get(k)!r} here"
                      for part in ("device", "protocol") for k in wanted[part] if had[part].get(k) != wanted[part].get(k)]
            raise NasError(
                f"{target}'s latency was measured on another device or protocol ({'; '.join(differ)}): its figures and "
                "these would not compare; give --fresh to measure every point again, or --output another file"
            )
    todo = [p for p in table.points if p.latency is None]
    run = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "points": 0, "seconds": 0.0,
           "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    if measured_in is not None:
        todo = _take_measured(todo, Table.load(measured_in), wanted, run, str(measured_in))
        if run.get("taken"):
            table.latency["runs"].extend(run.pop("taken_runs"))  # the runs that measured what was taken
            say(f"{run['taken']} points take their latency from {measured_in}")
            table.save(target)
    table.latency["runs"].append(run)
    started = time.perf_counter()
    if todo:
        say(f"measuring {len(todo)} of {len(table.points)} points on {here.describe()}")
        if progress is not None:
            progress(len(table.points) - len(todo), len(table.points), None, None)
    try:
        for i, point in enumerate(todo, 1):
            result = measure_latency(ArchSpec.model_validate(point.spec), protocol)
            point.latency = {
                "ms": round(result.ms, 4), "iqr_ms": round(result.latency.iqr_ms, 4), "runs": result.latency.runs,
                "load_average": list(result.device.load_average),
            }
            run["points"] += 1
            run["seconds"] = round(time.perf_counter() - started, 1)
            run["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            table.save(target)
            if progress is not None:
                progress(len(table.points) - len(todo) + i, len(table.points), point, point.latency)
    finally:
        if not run["points"] and not run.get("taken"):
            table.latency["runs"].pop()  # nothing measured: no run to record
    return table


def _take_measured(todo: list[TablePoint], other: Table, wanted: dict, run: dict, name: str) -> list[TablePoint]:
    """Give the points of `todo` that `other` measured their measurement (refused unless `other` was measured on
    this device by this protocol); returns the points left to measure."""
    stored = other.latency
    if stored is None:
        raise NasError(f"{name} has no latency: measure it with nas bench latency first")
    had = {"device": {k: v for k, v in stored["device"].items() if k in wanted["device"]}, "protocol": stored["protocol"]}
    if had != wanted:
        raise NasError(f"{name}'s latency was measured on another device or protocol: its figures and these would not compare")
    measured = {p.id: p.latency for p in other.points if p.latency is not None}
    left = []
    for point in todo:
        if point.id in measured:
            point.latency = dict(measured[point.id])
        else:
            left.append(point)
    run["taken"] = len(todo) - len(left)
    run["taken_from"] = f"{name} (study {other.study})"
    run["taken_runs"] = [{**r, "in": name} for r in stored.get("runs", [])]  # when and how what was taken was measured
    return left


def latency_agreement(table: Table, predictor=None) -> dict:
    """How MACs rank the table's measured latency (Kendall tau over every measured point, and within the
    2.4-4.8 GMACs class where MACs rank it worst), the spread of ms per GMAC and of the measurement itself; with
    `predictor` (a searchspace.latency_table.LatencyTable of `nas latency build`), its predictions against the
    measurement on the points it did not measure itself (tau, share within 10%, median error), and on the
    points it measured too, how the two measurements agree (the measurement's own repeatability)."""
    from searchspace.latency_table import kendall_tau, score

    measured = [p for p in table.points if p.latency is not None]
    macs = np.array([p.macs for p in measured], dtype=float)
    ms = np.array([p.latency_ms for p in measured])
    inside = (macs >= LATENCY_CLASS[0]) & (macs <= LATENCY_CLASS[1])
    per_gmac = ms / (macs / 1e9) if len(ms) else np.array([math.nan])
    result = {
        "points": len(table.points), "measured": len(measured),
        "macs_tau": kendall_tau(macs, ms), "class_gmacs": [LATENCY_CLASS[0] / 1e9, LATENCY_CLASS[1] / 1e9],
        "class_points": int(inside.sum()), "class_macs_tau": kendall_tau(macs[inside], ms[inside]),
        "ms_per_gmac": [float(np.min(per_gmac)), float(np.median(per_gmac)), float(np.max(per_gmac))],
        "ms": [float(np.min(ms)), float(np.median(ms)), float(np.max(ms))] if len(ms) else [math.nan] * 3,
        "median_relative_iqr": float(np.median([p.latency["iqr_ms"] / p.latency["ms"] for p in measured])) if measured else math.nan,
    }
    if table.latency:
        result["device"] = table.latency["device"]
        result["protocol"] = table.latency["protocol"]
        result["runs"] = table.latency.get("runs", [])
    if predictor is not None:
        from searchspace.latency import Device

        stored = (table.latency or {}).get("device", {})
        specs = [ArchSpec.model_validate(p.spec) for p in measured]
        held = [(s, p) for s, p in zip(specs, measured) if predictor.measured(s) is None]
        both = [(predictor.measured(s), p.latency_ms) for s, p in zip(specs, measured) if predictor.measured(s) is not None]
        sources: dict[str, int] = {}
        for s, _ in held:
            sources[predictor.source(s)] = sources.get(predictor.source(s), 0) + 1
        result["predictor"] = {
            "kind": predictor.predictor, "device": predictor.device, "protocol": predictor.protocol, "sources": sources,
            "same_device": {k: predictor.device.get(k) for k in Device.HARDWARE} == {k: stored.get(k) for k in Device.HARDWARE},
            "held_out": score(np.array([predictor.predict(s) for s, _ in held]), np.array([p.latency_ms for _, p in held])) if len(held) >= 2 else None,
        }
        if len(both) >= 2:
            a, b = np.array(both).T
            result["predictor"]["measured_by_both"] = {
                "n": len(both), "tau": kendall_tau(a, b), "median_abs_difference": float(np.median(np.abs(a / b - 1))),
            }
    return result


def spearman_table(table: Table) -> list[dict]:
    """Spearman's rank correlation of each zero-cost score (and MACs, params) with the trained top-1 of the
    table's complete points, with a 95% interval (Fisher z, Bonett and Wright's variance 1.06/(n-3))."""
    from scipy.stats import spearmanr

    done = [p for p in table.points if p.complete]
    names = sorted({k for p in done for k in p.zero_cost}, key=lambda k: (k in ("macs", "params"), k))
    rows = []
    for name in names:
        pairs = [(p.zero_cost[name], p.top1) for p in done if name in p.zero_cost and not math.isnan(p.zero_cost[name])]
        n = len(pairs)
        if n < 4:
            rows.append({"score": name, "n": n, "rho": math.nan, "low": math.nan, "high": math.nan, "p": math.nan})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant score: rho is NaN, said so in the row
            rho, p_value = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
        half = 1.96 * math.sqrt(1.06 / (n - 3)) if n > 3 else math.inf
        z = math.atanh(max(-0.999999, min(0.999999, rho))) if not math.isnan(rho) else math.nan
        rows.append({"score": name, "n": n, "rho": float(rho), "low": math.tanh(z - half), "high": math.tanh(z + half), "p": float(p_value)})
    return rows
