"""The project's one Pareto front and one hypervolume, on any number of objectives (moocore's C routines).

Whatever asks which points are on a front, or how much a front dominates, comes here: a study's front
(`nas pareto`, the report, the dashboard, the sampler's model of a large study), MO-ASHA's rungs
(nas.scheduler), the benchmark table and its replays (nas.bench, nas.replay). Nothing assumes two objectives.

The hypervolume, one definition everywhere: each objective normalised to the box of the best front known
(for a benchmark table its whole front, for a study its own front of feasible, fully trained trials), 0 at
the box's ideal end and 1 at its nadir end, up to the reference point REFERENCE in every normalised objective
(10% beyond the front's nadir, so the front's ends count). Where a hypervolume is shown, its reference point
is shown too, in the objectives' own units (`Box.reference_point`).

Imports numpy, moocore and Optuna's trial states; never nas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import moocore
import numpy as np
from optuna.trial import FrozenTrial, TrialState

REFERENCE = 1.1  # the reference point in every normalised objective


def as_losses(values, directions: Sequence) -> np.ndarray:
    """Rows of objective values as losses (to minimise): a maximised objective negated. `directions`:
    "maximize"/"minimize" or Optuna's StudyDirection, one per column."""
    signs = np.array([-1.0 if _maximised(d) else 1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs


def nondominated(losses: np.ndarray) -> np.ndarray:
    """Which rows no other row dominates (every copy of a front point stays on it, as in Optuna's best_trials)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    return moocore.is_nondominated(losses, keep_weakly=True)


def front_ranks(losses: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 0 for the rows no other dominates, 1 for those only rank-0 rows dominate, ..."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(moocore.pareto_rank(losses), dtype=int)


def feasible(trial: FrozenTrial) -> bool:
    """Optuna's feasibility: every constraint <= 0 (a trial without constraints is feasible)."""
    return all(c <= 0.0 for c in trial.constraints.values())


def front_trials(trials: Sequence[FrozenTrial], directions: Sequence) -> list[FrozenTrial]:
    """`study.best_trials` of `trials`: the COMPLETE, feasible ones that no other such trial dominates, in
    their order. Reads each trial as it is (no deep copy: study.best_trials copies every trial first)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)]
    on_front = nondominated(as_losses([t.values for t in done], directions))
    return [t for t, keep in zip(done, on_front) if keep]


@dataclass(frozen=True)
class Box:
    """The box a hypervolume is normalised to: the best (`ideal`) and worst (`nadir`) value of each objective
    over a front, in the objectives' own units and directions."""

    directions: tuple[str, ...]
    ideal: tuple[float, ...]
    nadir: tuple[float, ...]

    @classmethod
    def of(cls, values, directions: Sequence) -> Box:
        """The box of the front of `values` (rows of objective values); raises ValueError without a row."""
        directions = tuple("maximize" if _maximised(d) else "minimize" for d in directions)
        losses = as_losses(values, directions)
        if len(losses) == 0:
            raise ValueError("a hypervolume's box needs at least one point")
        front = losses[nondominated(losses)]
        signs = np.where([d == "maximize" for d in directions], -1.0, 1.0)
        return cls(directions, tuple(front.min(0) * signs), tuple(front.max(0) * signs))

    def normalise(self, values) -> np.ndarray:
        """Rows of objective values as losses in the box: 0 at its ideal end, 1 at its nadir end (an objective
        the front does not spread over is measured in its own units from the ideal)."""
        ideal, nadir = np.array(self.ideal), np.array(self.nadir)
        span = nadir - ideal
        unit = np.where([d == "maximize" for d in self.directions], -1.0, 1.0)
        return (np.asarray(values, dtype=float).reshape(-1, len(ideal)) - ideal) / np.where(span != 0, span, unit)

    def reference_point(self) -> tuple[float, ...]:
        """The hypervolume's reference point in the objectives' own units."""
        ideal, nadir = np.array(self.ideal), np.array(self.nadir)
        unit = np.where([d == "maximize" for d in self.directions], -1.0, 1.0)
        span = np.where(nadir != ideal, nadir - ideal, unit)
        return tuple(float(v) for v in ideal + REFERENCE * span)


def hypervolume(values, box: Box) -> float:
    """The hypervolume the points `values` (rows of objective values) dominate in `box`'s normalisation, up to
    the reference point; points beyond it add nothing."""
    losses = box.normalise(values)
    if len(losses) == 0:
        return 0.0
    return float(moocore.hypervolume(losses, ref=np.full(losses.shape[1], REFERENCE)))


def hypervolume_history(values, box: Box) -> list[float]:
    """The hypervolume after each of the points `values` (rows, in the order they came), in `box`."""
    losses = box.normalise(values)
    history, front, current = [], np.empty((0, losses.shape[1])), 0.0
    for row in losses:
        if not len(front) or not ((front <= row).all(1) & (front < row).any(1)).any():  # not dominated: the front moves
            front = np.vstack([front, row])
            front = front[nondominated(front)]
            current = float(moocore.hypervolume(front, ref=np.full(losses.shape[1], REFERENCE)))
        history.append(current)
    return history


def _maximised(direction) -> bool:
    return str(getattr(direction, "name", direction)).lower() in ("maximize", "maximise")
