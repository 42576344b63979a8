"""Searches replayed against a benchmark table in seconds: the real searcher, samplers and schedulers on a
simulated clock; only training is looked up (`nas bench run`, benchmarks/quality.py).

Imports Ray Tune's searcher and scheduler APIs (never starts Ray), Optuna, and the layers below.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FixedTrial
from ray.tune.experiment import Trial  # the type; made by ray_internals.stand_in_trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from searchspace import ArchSpec, NasError, SearchSpace, count
from trials import record

from .bench import Table, TablePoint
from .ray_internals import stand_in_trial
from .scheduler import evaluation_points, make_scheduler, rungs_of
from .searcher import StudySearcher, Tally
from .study import make_sampler


class TableSearcher(StudySearcher):
    """The real searcher over a table: the sampler draws in the table's space exactly as in a search (a draw
    over the budget is infeasible for it), and an in-budget draw is answered by a table point not tried yet.

    Why this stand-in: the table holds a few hundred of the ~1e30 points, so a draw is almost never one of
    them; refusing other draws would stall every sampler, and a categorical 'point index' would hide the
    dimensions every model-based sampler learns from. The point trained is the untried one nearest to the
    draw in the sampler's own coordinates (Gower distance over its parameters: the share of dimensions
    that differ, numbers by their normalised gap, a dimension only one of them has counting as differing)
    plus the log-ratio of their MACs over the table's log-range: a draw's MACs are exact, so the stand-in
    keeps the cost the sampler asked for (on the unified space at 4.5G, without it the MACs of draw and
    stand-in are uncorrelated, Spearman 0.08; with it 0.97, median 6% apart, at a Gower distance of 0.62
    instead of 0.57, two random points being 0.75 apart). The sampler then learns the stand-in at its own
    coordinates (drafts.DraftStudy.stand_in), so every observation it learns from is a measured point
    where it lies, as in a real search; every draw costs one training, as new points do there. Ties go
    to a seeded random choice. A draw whose proxy network is a table point's is that point, and once that
    point was trained, a repeat (or proxy twin) for the sampler, as in a search. `fidelity` keeps (Gower
    distance, |log MACs ratio|) of every stand-in."""

    def __init__(self, table: Table, study: optuna.Study, space: SearchSpace, sampler, seed: int):
        super().__init__(study, space, table.budget, table.recipe, len(table.points), (), sampler)
        self.table = table
        self.fidelity: list[tuple[float, float]] = []
        self._rng = np.random.default_rng(seed)
        self._grid = _coordinates(table, space)

    def stand_in(self, draft, spec):
        g = self._grid
        tried = {t.user_attrs.get(record.SPEC_ID) for t in self.study.get_trials(deepcopy=False)}
        free = np.array([p.id not in tried for p in self.table.points])
        if not free.any():
            return None, None  # the table is exhausted: the search ends
        same = g["by_proxy"].get(self.proxy_id(spec))  # the draw's own proxy network is a table point
        if same is not None and not free[same]:
            if self.table.points[same].complete:
                return draft, spec  # tried already: a repeat (or a proxy twin) for the sampler, as in a search
            same = None  # it failed: answered as any other draw
        params, dists = draft.params, draft.distributions
        drawn = np.array([name in params for name in g["names"]])
        values = np.array([_encode(dists[n], params[n]) if n in params else 0.0 for n in g["names"]])
        elsewhere = sum(name not in g["index"] for name in params)  # dimensions no table point has
        both = g["present"] & drawn
        gap = np.where(g["numeric"], np.abs(g["values"] - values), g["values"] != values)
        differ = (g["present"] != drawn).sum(1) + (gap * both).sum(1) + elsewhere
        gower = differ / ((g["present"] | drawn).sum(1) + elsewhere)
        cost = np.abs(g["log_macs"] - math.log(count(spec).macs)) / g["log_range"]
        distance = np.where(free, gower + cost, np.inf)
        nearest = np.flatnonzero(distance <= distance.min() + 1e-12)
        if same is not None:  # that point itself
            i = same
        else:
            i = int(nearest[self._rng.integers(len(nearest))]) if len(nearest) > 1 else int(nearest[0])
        self.fidelity.append((float(gower[i]), float(cost[i] * g["log_range"])))
        point = self.table.points[i]
        return self.drafts.stand_in(draft, g["params"][i], g["distributions"][i]), ArchSpec.model_validate(point.spec)


def _encode(distribution, value) -> float:
    """A parameter as a number: a category's index, a number scaled to [0, 1] over its range."""
    if isinstance(distribution, CategoricalDistribution):
        return float(distribution.to_internal_repr(value))
    span = distribution.high - distribution.low
    return (value - distribution.low) / span if span else 0.0


def _coordinates(table: Table, space: SearchSpace) -> dict:
    """The table points in the samplers' coordinates (the parameters `space.suggest` names), computed once."""
    if table.coordinates is None:
        params, dists = [], []
        for p in table.points:
            fixed = FixedTrial(space.params_of(ArchSpec.model_validate(p.spec)))
            space.suggest(fixed)
            params.append(fixed.params)
            dists.append(fixed.distributions)
        names = sorted({n for d in dists for n in d})
        kinds = {n: d[n] for d in dists for n in d}
        log_macs = np.log([p.macs for p in table.points])
        table.coordinates = {
            "names": names,
            "index": set(names),
            "numeric": np.array([not isinstance(kinds[n], CategoricalDistribution) for n in names]),
            "present": np.array([[n in d for n in names] for d in dists]),
            "values": np.array([[_encode(d[n], p[n]) if n in d else 0.0 for n in names] for p, d in zip(params, dists)]),
            "params": params,
            "distributions": dists,
            "log_macs": log_macs,
            "log_range": float(log_macs.max() - log_macs.min()) or 1.0,
            "by_proxy": {p.proxy_id: i for i, p in enumerate(table.points)},
        }
    return table.coordinates


@dataclass
class Replay:
    """One replayed search: the hypervolume of its front of complete points against simulated seconds."""

    sampler: str
    scheduler: str
    seed: int
    workers: int
    budget_seconds: float
    trace: list[tuple[float, float]]  # (simulated seconds, hypervolume) at the start and at each change
    log: list[tuple[float, str, str, str]]  # (simulated seconds, trial id, point id, what happened)
    stopped_per_rung: dict[float, int]  # rung (epochs) -> trials the scheduler stopped there
    study: optuna.Study
    tally: Tally
    fidelity: list[tuple[float, float]]
    suggest_seconds: float  # real seconds the searcher and its sampler took (not on the simulated clock)
    exhausted: bool  # every table point was tried before the budget ran out

    @property
    def hypervolume(self) -> float:
        return self.trace[-1][1]

    def summary(self) -> dict:
        return {
            "sampler": self.sampler, "scheduler": self.scheduler, "seed": self.seed, "workers": self.workers,
            "budget_seconds": self.budget_seconds, "hypervolume": self.hypervolume,
            "complete": self.tally.complete, "pruned": self.tally.pruned, "failed": self.tally.failed,
            "draws_over_budget": self.tally.over_budget, "table_exhausted": self.exhausted,
            "stopped_per_rung": {format(rung, "g"): n for rung, n in self.stopped_per_rung.items()},
            "suggest_seconds": round(self.suggest_seconds, 3), "trace": self.trace,
        }


def replay(
    table: Table, sampler: str = "tpe", scheduler: str = "pareto", seed: int = 0, workers: int = 2,
    budget_seconds: float | None = None, trials: int | None = None,
) -> Replay:
    """Replay a search against `table`: the real StudySearcher (on an in-memory study) and scheduler, `workers`
    trials at a time on a simulated clock. A trial reports what the trainable reports under `scheduler`
    (`_results`), each evaluation arriving at the trial's start plus the wall-clock seconds the table
    measured for it (as Syne Tune's simulator backend does; tables without them: the training seconds);
    Ray's calls follow TuneController: on each result the scheduler decides, the searcher hears the result
    unless it is stopped, and a stopped or finished trial is completed for both and its worker takes the
    next trial at once. The clock never counts the sampler's own time (measured apart), so the same seed
    gives the same trace. At the budget the running trials are stopped, as Ray's time budget does.
    `trials` is what the sampler is sized for, as `nas search --trials` sizes it (TPE's random start,
    NSGA-II's population); by default the full trainings the budget holds.
    A table made from a search (Table.of_search) holds the curves of its stopped points only as far as they
    ran: a replay that would train one further is not that search, and raises NasError."""
    space = table.load_space()
    budget_seconds = budget_seconds or table.default_budget_seconds(workers)
    wanted = evaluation_points(scheduler, table.recipe.epochs)  # where the trainable evaluates under this scheduler
    grid = {k / table.evaluations_per_epoch for k in range(1, table.evaluations_per_epoch * table.recipe.epochs)}
    if set(wanted) - grid:
        raise NasError(f"the table has {table.evaluations_per_epoch} evaluations an epoch; --scheduler {scheduler} evaluates at {wanted} epochs")
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    searcher = TableSearcher(table, study, space, make_sampler(sampler, seed, trials or table.full_trainings(budget_seconds, workers)), seed)
    trial_scheduler = make_scheduler(scheduler, table.recipe.epochs)
    milestones = rungs_of(table.recipe.epochs)
    log, trace, complete, events = [], [(0.0, 0.0)], [], []
    stopped = {m: 0 for m in milestones} if scheduler != "none" else {}
    running: dict[str, _Running] = {}
    clock, thinking = 0.0, 0.0
    searcher.clock = lambda: clock  # the curves the replayed study records run on the simulated clock

    def start() -> None:
        nonlocal thinking
        trial_id = f"{searcher.tally.started:05d}"
        begin = time.perf_counter()
        config = searcher.suggest(trial_id)
        thinking += time.perf_counter() - begin
        if config is None or config == Searcher.FINISHED:
            return
        point = table.point(config["spec_id"])
        trial = stand_in_trial(trial_id, config)
        trial_scheduler.on_trial_add(None, trial)
        searcher.started(trial_id)
        running[trial_id] = run = _Running(trial, point, _results(point, wanted), clock)
        log.append((clock, trial_id, point.id, "start"))
        heapq.heappush(events, (run.arrival(0), int(trial_id), 0))

    def finish(run: _Running) -> None:
        del running[run.trial.trial_id]
        trial_scheduler.on_trial_complete(None, run.trial, run.last)
        before = searcher.tally.complete
        searcher.on_trial_complete(run.trial.trial_id, run.last)
        if searcher.tally.complete > before:
            complete.append(run.point)
            trace.append((clock, table.hypervolume(complete)))
        log.append((clock, run.trial.trial_id, run.point.id, study.get_trials(deepcopy=False)[run.trial.config["trial_number"]].state.name.lower()))

    for _ in range(workers):
        start()
    while events and events[0][0] <= budget_seconds:
        clock, number, k = heapq.heappop(events)
        run = running[f"{number:05d}"]
        run.last = result = run.results[k][1]
        decision = trial_scheduler.on_trial_result(None, run.trial, result)
        log.append((clock, run.trial.trial_id, run.point.id, f"result {k}: {decision}"))
        last = k == len(run.results) - 1
        progress = result.get("progress", 0)
        if decision == TrialScheduler.STOP and progress < table.recipe.epochs:
            stopped[max(m for m in milestones if m <= progress + 1e-9)] += 1
        elif last and decision != TrialScheduler.STOP and "failure" not in result and progress < table.recipe.epochs:
            raise NasError(
                f"point {run.point.id}: the table's curve ends at {progress:g} epochs (the search it was made from stopped "
                "it there), but this replay goes on training it: it is not that search"
            )
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(run.trial.trial_id, result)
        if decision == TrialScheduler.STOP or last:
            finish(run)
            start()  # the freed worker takes the next trial
        else:
            heapq.heappush(events, (run.arrival(k + 1), number, k + 1))
    clock = budget_seconds
    for trial_id in sorted(running):  # the time budget is spent: Ray stops the trials still training
        finish(running[trial_id])
    return Replay(
        sampler, scheduler, seed, workers, budget_seconds, trace, log, stopped, study, searcher.tally, searcher.fidelity, thinking,
        exhausted=searcher.tally.started >= len(table.points),
    )


@dataclass
class _Running:
    """A trial on a simulated worker: its stand-in Ray trial, point, results to come, start, last result."""

    trial: Trial
    point: TablePoint
    results: list[tuple[float, dict]]  # (seconds after the trial's start when it arrives, the result)
    begin: float
    last: dict = field(default_factory=dict)

    def arrival(self, k: int) -> float:
        return self.begin + self.results[k][0]


def _results(point: TablePoint, wanted: list[float]) -> list[tuple[float, dict]]:
    """The results the trainable reports for a point when it evaluates at `wanted` (epochs: the scheduler's
    rungs, nas.scheduler.evaluation_points) and at its end: the table's first evaluation at or past each of
    `wanted`, and its last; as Ray hands them on, each with the seconds after its start when it arrives.

    Those are the wall-clock seconds the table measured (training, evaluations, Ray's start and reports,
    as a search sees them), less the evaluations this trainable would not make (each as long as the next
    one the table measured: the seconds beyond training between the two); tables without them: the
    training seconds. A failed point's last report is its failure, as its last evaluation arrives (the
    failure's own time was not measured: it comes a little early)."""
    curve = point.curve
    clock = curve.get(record.WALL_SECONDS) or curve[record.TRAIN_SECONDS]
    progresses = curve["progress"]
    kept = {min((i for i, p in enumerate(progresses) if p >= w - 1e-9), default=None) for w in wanted}
    kept.add(len(progresses) - 1 if point.complete else None)  # a failed point's last report is its failure
    results, skipped = [], 0.0
    for i, (progress, top1, seconds) in enumerate(zip(progresses, curve[record.PROXY_TOP1], curve[record.TRAIN_SECONDS])):
        if i in kept:
            results.append((clock[i] - skipped, {
                "progress": progress, "epoch": int(progress + 1e-9), record.PROXY_TOP1: top1, record.TRAIN_SECONDS: seconds,
                record.MACS: point.macs,
            }))
        elif record.WALL_SECONDS in curve and i + 1 < len(clock):
            skipped += (clock[i + 1] - clock[i]) - (curve[record.TRAIN_SECONDS][i + 1] - seconds)
    if not point.complete:
        at = clock[-1] - skipped if clock else 0.0
        results.append((at, {"failure": point.fail_reason, record.PROXY_TOP1: math.nan, record.TRAIN_SECONDS: point.seconds}))
    return results
