"""The benchmark table: a fixed, seeded set of points of a space trained once (`nas bench build`), their
learning curves and zero-cost scores, exported as one file; nas.replay replays searches against it.

Imports optuna, searchspace, trials and nas.search/nas.study; Ray only inside the build (nas.search).
"""

from __future__ import annotations

import gzip
import json
import math
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

from .search import SearchOptions
from .study import fail_stale_trials, open_search_study, open_storage, settles_its_point, space_digest, storage_errors

DEFAULT_TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "table-unified-4.5G.json.gz"
FORMAT = "nas-bench-table/1"
# A replay's default time budget: the compute of a default `nas search` (24 trials), i.e. the seconds
# `workers` need for that many full trainings of an average table point. Kept well below the table's
# size: a budget that could train the whole table would end every strategy on the same front.
DEFAULT_TRAININGS = SearchOptions.trials


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

    @property
    def complete(self) -> bool:
        return self.fail_reason is None

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
        """Write the table as gzipped JSON; returns its size in bytes."""
        document = asdict(replace(self, coordinates=None))
        del document["coordinates"]
        data = gzip.compress(json.dumps(document, sort_keys=True).encode(), mtime=0)  # same table, same bytes
        try:
            Path(path).write_bytes(data)
        except OSError as exc:
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

    def front(self) -> list[TablePoint]:
        """The table's Pareto front of fully trained points (most top-1, least MACs), by MACs."""
        done = self.trained()
        on_front = nondominated(as_losses([p.objectives for p in done], record.DIRECTIONS))
        return sorted((p for p, keep in zip(done, on_front) if keep), key=lambda p: (p.macs, -p.top1))

    def box(self) -> Box:
        """The box every hypervolume of this table is normalised to: its whole front's (dashboards.pareto)."""
        front = self.front()
        if not front:
            raise NasError("the table has no complete point")
        return Box.of([p.objectives for p in front], record.DIRECTIONS)

    def reference_point(self) -> tuple[float, float]:
        """The hypervolume's reference point in (top-1, MACs)."""
        return self.box().reference_point()

    def hypervolume(self, points: list[TablePoint]) -> float:
        """The hypervolume of `points` (their front) in the table front's box (dashboards.pareto.hypervolume)."""
        return hypervolume([p.objectives for p in points], self.box())


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
