"""The early-stopping schedulers on hand-made rungs (no Ray cluster): MO-ASHA's promotion rule, its rungs,
its checkpoint, and the trainable's half-epoch reports it decides on."""

import math

import numpy as np
import pytest
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from nas.ray_internals import stand_in_trial
from nas.scheduler import MOASHAScheduler, make_scheduler
from searchspace import NasError, count, load_space
from trials import ProxyRecipe, load_proxy_data

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
M = 1_000_000


def pareto(epochs=2, reduction_factor=2):
    return make_scheduler("pareto", epochs, reduction_factor)


def new_trial(scheduler):
    trial = stand_in_trial()
    scheduler.on_trial_add(None, trial)  # as Tune does; Ray's tests pass a mock controller, these need none
    return trial


def arrive(scheduler, top1, macs, progress=0.5, trial=None):
    """A trial's report at `progress` epochs (a new trial's unless given); the scheduler's decision."""
    trial = trial or new_trial(scheduler)
    return scheduler.on_trial_result(None, trial, {"progress": progress, "epoch": int(progress), "proxy_top1": top1, "macs": macs})


def test_a_2_epoch_proxy_is_judged_at_half_an_epoch_and_at_one_epoch():
    assert pareto(epochs=2).milestones == [0.5, 1.0]
    assert pareto(epochs=2, reduction_factor=3).milestones == [0.5, 1.5]
    assert pareto(epochs=3).milestones == [0.5, 1.0, 2.0]
    assert pareto(epochs=1).milestones == [0.5]


def test_the_first_trial_at_a_rung_continues_however_weak():
    s = pareto()
    assert arrive(s, top1=10.0, macs=4000 * M) == CONTINUE
    assert arrive(s, top1=11.0, macs=3900 * M) == CONTINUE  # dominates the first: continues too
    assert arrive(s, top1=5.0, macs=4100 * M) == STOP  # dominated by both: the last of three, one of two kept


@pytest.mark.parametrize("reduction_factor", [2, 3, 4])
def test_a_trial_that_dominates_every_other_at_its_rung_always_continues(reduction_factor):
    rng = np.random.default_rng(reduction_factor)
    for _ in range(20):
        s = pareto(reduction_factor=reduction_factor)
        points = [(rng.uniform(10, 80), rng.uniform(50, 4000) * M) for _ in range(rng.integers(1, 30))]
        for top1, macs in points:
            arrive(s, top1, macs)
        best = max(top1 for top1, _ in points) + 0.1, min(macs for _, macs in points) - 1
        assert arrive(s, *best) == CONTINUE


def test_a_dominated_trial_is_stopped_before_any_trial_on_the_first_front_where_asha_keeps_it():
    front = [(60.0, 50 * M), (70.0, 100 * M), (86.0, 400 * M)]
    dominated = (85.0, 500 * M)  # second best on top-1, but (86%, 400M) is better and cheaper
    s, asha = pareto(), make_scheduler("asha", 2)
    for point in front:
        arrive(s, *point), arrive(asha, *point)
    assert arrive(asha, *dominated) == CONTINUE  # above the median top-1
    assert arrive(s, *dominated) == STOP  # 4 at the rung, 2 kept, 3 ahead of it on the first front


def test_a_cheap_point_on_the_front_continues_where_asha_stops_it():
    s, asha = pareto(), make_scheduler("asha", 2)
    for point in [(80.0, 1000 * M), (82.0, 2000 * M), (84.0, 4000 * M)]:
        arrive(s, *point), arrive(asha, *point)
    cheapest = (55.0, 30 * M)  # the worst top-1, at a thirtieth of the MACs: one end of the front
    assert arrive(asha, *cheapest) == STOP
    assert arrive(s, *cheapest) == CONTINUE


@pytest.mark.parametrize("reduction_factor, n", [(2, 6), (2, 7), (3, 9), (3, 10), (4, 8)])
def test_the_kept_fraction_follows_the_reduction_factor(reduction_factor, n):
    """n trials at a rung on a chain (each dominates the next); a newcomer at each place in turn."""
    chain = [(90.0 - 10 * i, (i + 1) * 100 * M) for i in range(n - 1)]
    decisions = []
    for place in range(n):
        s = pareto(reduction_factor=reduction_factor)
        for point in chain:
            arrive(s, *point)
        decisions.append(arrive(s, 95.0 - 10 * place, (place + 0.5) * 100 * M))  # between chain[place - 1] and chain[place]
    kept = math.ceil(n / reduction_factor)
    assert decisions == [CONTINUE] * kept + [STOP] * (n - kept)


def test_ties_in_the_last_kept_front_go_to_the_larger_crowding_distance_then_to_the_newcomer():
    """Five trials on one front, three kept: both ends, then the most isolated of the three inside."""
    ends = [(10.0, 100 * M), (50.0, 500 * M)]

    def decide(inside, newcomer):
        s = pareto()
        for point in ends + inside:
            arrive(s, *point)
        return arrive(s, *newcomer)

    assert decide([(20.0, 200 * M), (25.0, 250 * M)], (40.0, 400 * M)) == CONTINUE  # in the widest gap
    assert decide([(20.0, 200 * M), (40.0, 400 * M)], (25.0, 250 * M)) == STOP  # crowded beside (20%, 200M)
    assert decide([(20.0, 200 * M), (40.0, 400 * M)], (30.0, 300 * M)) == CONTINUE  # evenly spaced: a tie
    assert decide([(20.0, 200 * M), (40.0, 400 * M)], (5.0, 60 * M)) == CONTINUE  # a new end of the front


def test_each_rung_compares_the_trials_that_reached_it():
    s = pareto()
    a, b = new_trial(s), new_trial(s)
    assert arrive(s, 70.0, 400 * M, progress=0.5, trial=a) == CONTINUE
    assert arrive(s, 60.0, 100 * M, progress=0.5, trial=b) == CONTINUE  # cheaper: on the front at 0.5
    assert arrive(s, 75.0, 400 * M, progress=0.75, trial=a) == CONTINUE  # between rungs: nothing to decide
    assert arrive(s, 80.0, 400 * M, progress=1.0, trial=a) == CONTINUE
    assert arrive(s, 65.0, 450 * M, progress=1.0, trial=b) == STOP  # dominated at 1 epoch
    assert arrive(s, 90.0, 400 * M, progress=2, trial=a) == CONTINUE  # the end of training is no rung


def test_a_failures_report_is_not_ranked():
    s = pareto()
    failed = s.on_trial_result(None, new_trial(s), {"failure": "diverged: nan", "proxy_top1": float("nan")})
    assert failed == CONTINUE  # Ray ends the trial; the searcher records why
    assert arrive(s, 10.0, 4000 * M) == CONTINUE  # still the first at the rung
    with pytest.raises(KeyError):  # a report with its progress but not its MACs is a bug, not "continue"
        s.on_trial_result(None, new_trial(s), {"progress": 0.5, "proxy_top1": 50.0})


def test_save_and_restore_round_trip_the_rungs(tmp_path):
    s = pareto()
    for point in [(60.0, 50 * M), (70.0, 100 * M), (86.0, 400 * M)]:
        arrive(s, *point)
    arrive(s, 1.0, 900 * M)  # stopped
    arrive(s, 80.0, 300 * M, progress=1.0)
    s.save(tmp_path / "scheduler.pkl")
    restored = pareto()
    restored.restore(tmp_path / "scheduler.pkl")
    assert restored.debug_string() == s.debug_string()
    assert "1 stopped" in s.debug_string() and "progress 0.5: 4 trials | progress 1: 1 trials" in s.debug_string()
    assert arrive(restored, 85.0, 500 * M) == arrive(s, 85.0, 500 * M) == STOP  # judged against the restored rung
    assert arrive(pareto(), 85.0, 500 * M) == CONTINUE  # a fresh scheduler would have let it go on


def test_the_scheduler_keeps_its_own_objectives_against_a_metric_given_to_tune():
    s = MOASHAScheduler({"proxy_top1": "max", "macs": "min"}, max_t=2)
    assert s.set_search_properties(None, None) and not s.set_search_properties("proxy_top1", "max")


def test_scheduler_names():
    assert isinstance(make_scheduler("pareto", 2), MOASHAScheduler) and type(make_scheduler("none", 2)) is FIFOScheduler
    with pytest.raises(NasError, match="unknown scheduler 'hyperband'"):
        make_scheduler("hyperband", 2)


def test_a_trial_reports_at_the_rungs_and_its_end_with_its_full_size_macs(monkeypatch, proxy_data_dir):
    import ray
    from ray import tune

    from nas.scheduler import evaluation_points
    from nas.trainable import proxy_trial

    reports = []
    monkeypatch.setattr(tune, "report", reports.append)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])  # no Ray session: this process is the trial
    spec = load_space("tiny").sample(0)
    recipe = ProxyRecipe(epochs=2, subset=512, val_size=256)
    data = load_proxy_data(str(proxy_data_dir), recipe.resolution, recipe.subset, recipe.val_size, recipe.seed)
    proxy_trial({"spec": spec.to_dict()}, data, recipe.as_dict(), evaluate_at=evaluation_points("pareto", recipe.epochs))
    assert "failure" not in reports[-1], reports[-1]
    assert [(r["progress"], r["epoch"]) for r in reports] == [(0.5, 0), (1, 1), (2, 2)]  # the rungs and the end
    assert {r["macs"] for r in reports} == {count(spec).macs}
    s = pareto()
    trial = new_trial(s)
    assert [s.on_trial_result(None, trial, r) for r in reports] == [CONTINUE] * 3
    assert "progress 0.5: 1 trials | progress 1: 1 trials" in s.debug_string()


def test_with_latency_as_an_objective_mo_asha_ranks_on_it_too():
    from trials import record

    s = make_scheduler("pareto", 2, objectives=(record.PROXY_TOP1, record.MACS, record.LATENCY_MS))
    report = {"progress": 0.5, "epoch": 0, "proxy_top1": 50.0, "macs": 100 * M}
    assert s.on_trial_result(None, new_trial(s), {**report, record.LATENCY_MS: 10.0}) == CONTINUE
    assert s.on_trial_result(None, new_trial(s), {**report, record.LATENCY_MS: 9.0}) == CONTINUE  # faster: dominates
    # as fast as neither: dominated by both on latency, equal on the rest; on top-1 and MACs alone a tie that continues
    assert s.on_trial_result(None, new_trial(s), {**report, record.LATENCY_MS: 20.0}) == STOP
    plain = pareto()
    for ms in (10.0, 9.0, 20.0):
        assert plain.on_trial_result(None, new_trial(plain), {**report, record.LATENCY_MS: ms}) == CONTINUE
