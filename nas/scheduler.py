"""Early stopping for a multi-objective search: MO-ASHA (a Pareto-aware ASHA) and the `--scheduler` factory.

Imports Ray Tune, numpy and dashboards.pareto (the project's one non-dominated sorting); never the study: it
decides on the trials' reported results alone.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from dashboards.pareto import front_ranks
from searchspace import NasError
from trials import record

SCHEDULERS = ("pareto", "asha", "none")
# The trainable evaluates every half epoch (its `progress` result, in epochs); the first rung is at half
# an epoch and rungs grow by an integer factor, so every rung lies on that grid and a 2-epoch proxy has
# two rungs (0.5 and 1 epochs at the default factor 2).
EVALUATIONS_PER_EPOCH = 2
# Halving, not thirds: a search trains tens of trials with two rungs, and at 3 only one in nine would
# reach the full proxy, too few to draw a front from; 2 is also what `asha` used before.
REDUCTION_FACTOR = 2


class MOASHAScheduler(FIFOScheduler):
    """Asynchronous successive halving on several objectives (MO-ASHA: Schmucker et al., 2021).

    Rungs lie at `grace_period * reduction_factor**k` units of `time_attr`, below `max_t`. A trial is
    decided when its first result at or past a rung arrives, against the trials that reached that rung
    so far (never waiting for a bracket to fill, as in ASHA): they are ranked by non-dominated sorting
    of `objectives` ({result key: "max" or "min"}), and within the front that straddles the cut by
    crowding distance (NSGA-II), and the trial continues if it is among the first
    ceil(n / reduction_factor) of the n trials at the rung. So the first trial at a rung, and one that
    dominates all the others, always continues, and a dominated trial is cut before any trial of the
    first front. Crowding distance, not hypervolume contribution, breaks ties: it needs no reference
    point, is blind to each objective's scale (MACs span two orders of magnitude, top-1 a few points),
    and keeps a front's two ends (the most accurate and the cheapest point). Equal distances favour the
    trial being decided, as ASHA lets a trial equal to its cutoff continue.
    """

    def __init__(
        self,
        objectives: dict[str, str],
        max_t: float,
        time_attr: str = "progress",
        grace_period: float = 1 / EVALUATIONS_PER_EPOCH,
        reduction_factor: float = REDUCTION_FACTOR,
    ):
        if not objectives or set(objectives.values()) - {"min", "max"}:
            raise ValueError(f"objectives must map result keys to 'min' or 'max', not {objectives!r}")
        if not 0 < grace_period < max_t or reduction_factor <= 1:
            raise ValueError("MO-ASHA needs 0 < grace_period < max_t and reduction_factor > 1")
        super().__init__()
        self._objectives = dict(objectives)
        self._time_attr = time_attr
        self._reduction_factor = reduction_factor
        milestones = [grace_period]
        while milestones[-1] * reduction_factor < max_t:
            milestones.append(milestones[-1] * reduction_factor)
        # milestone -> {trial id: the trial's objectives there, every one as a loss (to minimise)}
        self._rungs: dict[float, dict[str, list[float]]] = {m: {} for m in milestones}
        self._num_stopped = 0

    @property
    def milestones(self) -> list[float]:
        return list(self._rungs)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return metric is None and mode is None  # the objectives are this scheduler's own

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        rung = self._record(trial.trial_id, result)
        if rung is None or _survives_rung(rung, trial.trial_id, self._reduction_factor):
            return TrialScheduler.CONTINUE
        self._num_stopped += 1
        return TrialScheduler.STOP

    def _record(self, trial_id: str, result: dict) -> dict | None:
        """Enter the trial at the highest rung it has reached and not yet entered; that rung, or None.
        A result without the time (a failure's report) passes unrecorded, as in ASHA; one with the time
        but without an objective is a trainable's bug and raises KeyError, never silently continues."""
        if self._time_attr not in result:
            return None
        for milestone in reversed(self._rungs):
            rung = self._rungs[milestone]
            if result[self._time_attr] >= milestone:
                if trial_id in rung:
                    return None
                rung[trial_id] = [result[k] * (-1 if mode == "max" else 1) for k, mode in self._objectives.items()]
                return rung
        return None

    def debug_string(self) -> str:
        rungs = " | ".join(f"{self._time_attr} {m:g}: {len(r)} trials" for m, r in self._rungs.items())
        return f"Using MO-ASHA on {', '.join(self._objectives)}: {self._num_stopped} stopped; rungs {rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def _survives_rung(rung: dict[str, list[float]], trial_id: str, reduction_factor: float) -> bool:
    """Whether `trial_id` is among the first ceil(n / reduction_factor) trials of its rung, ranked by
    front, then by crowding distance within the front the cut falls in (ties go to `trial_id`)."""
    ids = list(rung)
    losses = np.array([rung[i] for i in ids], dtype=float)
    ranks = front_ranks(losses)
    me = ids.index(trial_id)
    kept = math.ceil(len(ids) / reduction_factor)
    better = int((ranks < ranks[me]).sum())
    front = np.flatnonzero(ranks == ranks[me])
    if better + len(front) <= kept:
        return True
    distance = _crowding_distance(losses[front])
    mine = distance[np.flatnonzero(front == me)[0]]
    return better + int((distance > mine).sum()) < kept


# Crowding distance by hand: Optuna has it only as a private function and moocore not at all; a rung holds
# tens of trials, so it is a few lines.
def _crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front (Deb et al., 2002): per objective, the gap
    between its two neighbours over the front's range, summed; infinite at either end of the front."""
    distance = np.zeros(len(losses))
    for column in losses.T:
        order = np.argsort(column, kind="stable")
        distance[order[[0, -1]]] = np.inf
        span = column[order[-1]] - column[order[0]]
        if span > 0:
            distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
    return distance


def rungs_of(epochs: int, reduction_factor: float = REDUCTION_FACTOR) -> list[float]:
    """The rungs (in epochs) where `pareto` and `asha` decide for a proxy of `epochs` epochs: half an epoch and
    every `reduction_factor`-fold after, below `epochs`."""
    rungs = [1 / EVALUATIONS_PER_EPOCH]
    while rungs[-1] * reduction_factor < epochs:
        rungs.append(rungs[-1] * reduction_factor)
    return rungs


def evaluation_points(scheduler: str, epochs: int) -> list[float]:
    """Where a trial is evaluated before its end (in epochs): the rungs, where `scheduler` decides; none for
    `none`, which decides nothing. The trainable always evaluates the end too (trials.train_proxy)."""
    return [] if scheduler == "none" else rungs_of(epochs)


def make_scheduler(
    name: str, epochs: int, reduction_factor: float = REDUCTION_FACTOR, objectives: tuple[str, ...] = (record.PROXY_TOP1, record.MACS),
) -> TrialScheduler:
    """The scheduler `nas search --scheduler NAME` runs, for a proxy of `epochs` epochs. `pareto` and
    `asha` share their rungs (every `reduction_factor`-fold from half an epoch), so they differ only in
    how they rank: on the study's objectives (trials.goals: keys the trainable reports), or on proxy top-1
    alone. `none` trains every trial fully."""
    grace = 1 / EVALUATIONS_PER_EPOCH
    if name == "pareto":
        from trials.goals import OBJECTIVES

        ranked = {key: "max" if OBJECTIVES[key][1] == "maximize" else "min" for key in objectives}
        return MOASHAScheduler(ranked, epochs, "progress", grace, reduction_factor)
    if name == "asha":
        return ASHAScheduler(
            time_attr="progress", metric=record.PROXY_TOP1, mode="max", max_t=epochs, grace_period=grace,
            reduction_factor=reduction_factor,
        )
    if name == "none":
        return FIFOScheduler()
    raise NasError(f"unknown scheduler {name!r} (schedulers: {', '.join(SCHEDULERS)})")
