"""The project's one Pareto front and one hypervolume (dashboards/pareto.py), on any number of objectives: the
front is Optuna's best_trials, feasibility included; the hypervolume is normalised to a front's box."""

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from dashboards.pareto import REFERENCE, Box, front_ranks, front_trials, hypervolume, hypervolume_history, nondominated

DIRECTIONS = ["maximize", "minimize", "minimize"]  # top-1, MACs and a third objective (say, measured latency)


def test_with_three_objectives_the_front_is_optunas_best_trials_ties_and_the_budget_constraint_included():
    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=DIRECTIONS)
    for i in range(300):
        macs, latency = rng.integers(1, 6, 2)  # few values: many ties; top-1 grows with both, so they trade off
        values = [float(50 + 3 * macs + 2 * latency + rng.integers(0, 3)), float(macs) * 1e9, float(latency)]
        study.add_trial(optuna.trial.create_trial(values=values, constraints={"macs_over_budget": float(rng.choice([-1.0, 0.0, 1.0]))}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    front = [t.number for t in front_trials(study.get_trials(deepcopy=False), study.directions)]
    assert front == [t.number for t in study.best_trials] and len(front) > 3


def test_non_dominated_sorting_ranks_each_point_by_the_fronts_above_it():
    rng = np.random.default_rng(1)
    losses = rng.integers(0, 4, (60, 3)).astype(float)  # ties and duplicates
    ranks = front_ranks(losses)
    dominates = (losses[:, None] <= losses[None]).all(-1) & (losses[:, None] < losses[None]).any(-1)
    for j in range(len(losses)):
        above = ranks[dominates[:, j]]
        assert ranks[j] == (above.max() + 1 if len(above) else 0)  # one past the deepest front that dominates it
    assert (nondominated(losses) == (ranks == 0)).all()


def test_the_hypervolume_is_the_volume_a_front_dominates_in_its_box_up_to_the_reference_point():
    box = Box.of([[90.0, 1.0, 1.0], [80.0, 0.0, 0.0]], DIRECTIONS)  # ideal (90, 0, 0), nadir (80, 1, 1)
    assert box.reference_point() == pytest.approx((90 - REFERENCE * 10, REFERENCE, REFERENCE))
    assert hypervolume([[90.0, 0.0, 0.0]], box) == pytest.approx(REFERENCE**3)  # the ideal point: the whole box
    assert hypervolume([[80.0, 1.0, 1.0]], box) == pytest.approx((REFERENCE - 1) ** 3)  # the nadir: a corner
    assert hypervolume([[70.0, 0.0, 0.0]], box) == 0.0  # beyond the reference point: nothing
    points = [[90.0, 1.0, 1.0], [80.0, 0.0, 0.0], [85.0, 0.5, 0.5], [80.0, 1.0, 1.0]]
    history = hypervolume_history(points, box)
    assert history == sorted(history) and history[-1] == pytest.approx(hypervolume(points, box))
    assert history[-1] == history[-2]  # a dominated point changes nothing
