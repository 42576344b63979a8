"""The searcher's contract with the study, driven directly (no Ray): budget, fidelity, duplicates, failures."""

import optuna
import pytest
from optuna.trial import TrialState

from nas.searcher import StudySearcher
from searchspace import count, load_space, parse_macs, preset
from trials import record as R


@pytest.fixture
def study():
    return optuna.create_study(directions=list(R.DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=0))


def searcher_for(study, budget="4.5G", epochs=2, trials=50, baselines=()):
    return StudySearcher(study, load_space("tiny"), parse_macs(budget), epochs, trials, list(baselines))


def full_result(top1=80.0, epoch=2):
    return {"epoch": epoch, "proxy_top1": top1, "proxy_loss": 0.5, "train_seconds": 3.0, "images_per_second": 100.0, "device": "cpu"}


def test_a_fully_trained_trial_is_complete_with_both_objectives_and_every_attribute(study):
    s = searcher_for(study)
    config = s.suggest("t1")
    s.on_trial_result("t1", full_result(epoch=1))
    s.on_trial_complete("t1", full_result())
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert trial.values == [80.0, count(config["spec"]).macs]
    for key in (R.SPEC, R.SPEC_ID, R.PARAMS, R.MACS, R.PROXY_TOP1, R.PROXY_LOSS, R.EPOCHS, R.TRAIN_SECONDS, R.IMAGES_PER_SECOND, R.DEVICE):
        assert key in trial.user_attrs
    assert trial.constraints[R.BUDGET_CONSTRAINT] <= 0 and study.best_trials == [trial]


def test_a_trial_the_scheduler_stopped_early_is_pruned_not_complete(study):
    s = searcher_for(study, epochs=3)
    s.suggest("t1")
    s.on_trial_complete("t1", full_result(top1=95.0, epoch=1))  # stopped by ASHA after 1 of 3 epochs
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[R.EPOCHS] == 1
    assert trial.user_attrs[R.PROXY_TOP1] == 95.0 and "stopped early" in trial.user_attrs[R.FAIL_REASON]
    assert study.best_trials == []  # a 1-epoch score never reaches the front


def test_a_trial_stopped_half_way_through_an_epoch_records_the_half_epoch(study):
    s = searcher_for(study, epochs=2)
    s.suggest("t1")
    s.on_trial_complete("t1", {**full_result(top1=40.0, epoch=0), "progress": 0.5})  # stopped at the first rung
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[R.EPOCHS] == 0.5
    assert trial.user_attrs[R.FAIL_REASON] == "stopped early (scheduler or time limit) (after 0.5 of 2 epochs)"


def test_points_over_budget_are_never_handed_to_ray_and_are_infeasible(study):
    s = searcher_for(study, budget="40M")
    configs = [s.suggest(f"t{i}") for i in range(5)]
    assert all(count(c["spec"]).macs <= parse_macs("40M") for c in configs)
    over = [t for t in study.trials if t.user_attrs[R.MACS] > parse_macs("40M")]
    assert over and all(t.state == TrialState.PRUNED and t.constraints[R.BUDGET_CONSTRAINT] > 0 for t in over)
    assert all("over the budget" in t.user_attrs[R.FAIL_REASON] for t in over)


def test_a_point_already_scored_is_answered_from_the_study_not_trained_again(study):
    s = searcher_for(study)
    first = s.suggest("t1")
    s.on_trial_complete("t1", full_result(top1=70.0))
    trained = {first["spec_id"]}
    for i in range(40):  # the tiny space has 128 points: repeats come quickly
        config = s.suggest(f"u{i}")
        assert config["spec_id"] not in trained
        trained.add(config["spec_id"])
        s.on_trial_complete(f"u{i}", full_result())
    repeats = [t for t in study.trials if R.DUPLICATE_OF in t.user_attrs]
    assert repeats and s.tally.duplicates == len(repeats)
    for t in repeats:
        original = study.trials[t.user_attrs[R.DUPLICATE_OF]]
        assert t.user_attrs[R.SPEC_ID] == original.user_attrs[R.SPEC_ID] and t.values == original.values


def test_a_failure_is_recorded_with_its_reason(study):
    s = searcher_for(study)
    s.suggest("t1")
    s.on_trial_complete("t1", {"failure": "diverged: the training loss became nan at epoch 1, step 1", "proxy_top1": float("nan")})
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs[R.FAIL_REASON].startswith("diverged")


def test_baselines_come_first_in_order_inside_the_space_as_samples_and_outside_it_as_specs(study):
    names = ["swin_t", "iddwnet_t", "dwnet_t", "u_pvt_micro", "localmlp_t"]
    s = StudySearcher(study, load_space("unified"), parse_macs("4.5G"), 2, 10, [preset(n) for n in names])
    for i, name in enumerate(names):
        config = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", full_result())
        assert config["spec_id"] == preset(name).id
        trial = study.trials[config["trial_number"]]
        assert trial.user_attrs[R.PRESET] == name
        assert bool(trial.params) == load_space("unified").contains(preset(name))  # samples carry parameters
    assert preset("swin_t").id not in {c["spec_id"] for c in [s.suggest("after")]}


def test_a_trial_another_search_failed_meanwhile_does_not_crash_this_one(study):
    s = searcher_for(study)
    s.suggest("t1")
    study.tell(study.trials[0].number, state=TrialState.FAIL)  # what a second search's fail_stale_trials does
    s.on_trial_complete("t1", full_result())
    assert s.tally.failed == 1 and study.trials[0].state == TrialState.FAIL
    assert s.suggest("t2")["spec_id"]  # and the search goes on


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp"])
def test_every_sampler_steers_the_search_through_the_named_dimensions(sampler):
    from nas.study import make_sampler

    study = optuna.create_study(directions=list(R.DIRECTIONS), sampler=make_sampler(sampler, 0, 12))
    s = searcher_for(study)
    for i in range(12):
        config = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", full_result(top1=50.0 + i))
        assert config["spec_id"]
    trained = [t for t in study.trials if R.DUPLICATE_OF not in t.user_attrs]
    assert len({t.user_attrs[R.SPEC_ID] for t in trained}) == len(trained) == 12
    assert any(name.startswith("s1.mixer.") for name in trained[-1].params)
