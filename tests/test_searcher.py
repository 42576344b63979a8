"""The searcher's contract with the study, driven directly (no Ray): budget, fidelity, repeats, failures,
and what the samplers see of the draws that are not trained."""

import time

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas.searcher import StudySearcher
from nas.study import make_sampler, settles_its_point
from searchspace import count, load_space, parse_macs, preset
from trials import ProxyRecipe
from trials import record

TIGHT_SPACE = """
name: tight
stages: 4
stage:
  depth: [[1], [1], {low: 1, high: 2}, [1]]
  dim: [[16, 32], [32], [64], [64]]
  ffn_ratio: [2.0]
mixer:
  connectivity: [window]
  dynamic: [attention]
  kernel: [4]
  head_dim: [8]
  shift: [true, false]
  rel_pos: [true]
"""


@pytest.fixture
def study():
    return optuna.create_study(directions=list(record.DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=0))


def searcher_for(study, budget="4.5G", epochs=2, trials=50, baselines=(), space="tiny", sampler=None):
    space = load_space(space)
    return StudySearcher(study, space, parse_macs(budget), ProxyRecipe(epochs=epochs), trials, list(baselines), sampler)


def full_result(top1=80.0, epoch=2):
    return {"epoch": epoch, "proxy_top1": top1, "proxy_loss": 0.5, "train_seconds": 3.0, "images_per_second": 100.0, "device": "cpu"}


def test_a_fully_trained_trial_is_complete_with_both_objectives_and_every_attribute(study):
    s = searcher_for(study)
    config = s.suggest("t1")
    s.on_trial_result("t1", full_result(epoch=1))
    s.on_trial_complete("t1", full_result())
    (trial,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert trial.values == [80.0, count(config["spec"]).macs]
    for key in (record.SPEC, record.SPEC_ID, record.PROXY_ID, record.PARAMS, record.MACS, record.PROXY_TOP1, record.PROXY_LOSS, record.EPOCHS, record.TRAIN_SECONDS, record.IMAGES_PER_SECOND, record.DEVICE):
        assert key in trial.user_attrs
    assert trial.constraints[record.BUDGET_CONSTRAINT] <= 0 and study.best_trials == [trial]


def test_a_trial_the_scheduler_stopped_early_is_pruned_not_complete(study):
    s = searcher_for(study, epochs=3)
    s.suggest("t1")
    s.on_trial_complete("t1", full_result(top1=95.0, epoch=1))  # stopped by ASHA after 1 of 3 epochs
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[record.EPOCHS] == 1
    assert trial.user_attrs[record.PROXY_TOP1] == 95.0 and "stopped early" in trial.user_attrs[record.FAIL_REASON]
    assert study.best_trials == []  # a 1-epoch score never reaches the front


def test_a_trial_stopped_half_way_through_an_epoch_records_the_half_epoch(study):
    s = searcher_for(study, epochs=2)
    s.suggest("t1")
    s.on_trial_complete("t1", {**full_result(top1=40.0, epoch=0), "progress": 0.5})  # stopped at the first rung
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[record.EPOCHS] == 0.5
    assert trial.user_attrs[record.FAIL_REASON] == "stopped early by the scheduler (after 0.5 of 2 epochs)"


def test_a_trial_cut_by_the_time_limit_is_no_measurement_and_the_next_run_trains_its_point_first(study):
    s = searcher_for(study, epochs=3)
    config = s.suggest("t1")
    s.on_trial_result("t1", full_result(top1=60.0, epoch=1))
    s.cut_unfinished()  # what nas search does when --time-limit runs out while t1 trains
    cut = study.trials[config["trial_number"]]
    assert cut.state == TrialState.FAIL and cut.user_attrs[record.CUT_BY_TIME_LIMIT] is True
    assert cut.user_attrs[record.FAIL_REASON] == "cut by the time limit after 1 of 3 epochs: not a measurement of its point, which is queued again"
    assert cut.user_attrs[record.EPOCHS] == 1 and not settles_its_point(cut) and s.tally.cut == 1 and s.tally.running == 0
    resumed = searcher_for(study, epochs=3)
    assert resumed.suggest("t2")["spec_id"] == config["spec_id"]  # the next run on the study trains it first


def test_a_trial_the_scheduler_stopped_stays_final_when_the_search_resumes(study):
    s = searcher_for(study, epochs=3, baselines=[preset("u_swin_micro")])
    config = s.suggest("t1")
    s.on_trial_complete("t1", full_result(top1=40.0, epoch=1))  # stopped by the scheduler at a rung
    stopped = study.trials[config["trial_number"]]
    assert stopped.state == TrialState.PRUNED and settles_its_point(stopped) and record.CUT_BY_TIME_LIMIT not in stopped.user_attrs
    resumed = searcher_for(study, epochs=3, baselines=[preset("u_swin_micro")])
    assert resumed.suggest("t2")["spec_id"] != preset("u_swin_micro").id  # not queued, not trained again


def test_points_over_budget_are_never_stored_and_the_sampler_sees_them_as_infeasible(study):
    s = searcher_for(study, budget="40M")
    configs = [s.suggest(f"t{i}") for i in range(5)]
    assert all(count(c["spec"]).macs <= parse_macs("40M") for c in configs)
    assert len(study.trials) == 5 and all(t.user_attrs[record.MACS] <= parse_macs("40M") for t in study.trials)
    seen = s.drafts.study.get_trials(states=(TrialState.COMPLETE,))
    assert s.tally.over_budget > 0 and len(seen) == s.tally.over_budget
    assert all(t.constraints[record.BUDGET_CONSTRAINT] > 0 and t.values[1] > parse_macs("40M") for t in seen)


def test_a_point_already_trained_is_drawn_again_but_never_stored_or_trained_again(study):
    s = searcher_for(study)
    for i in range(40):  # the tiny space has 128 points: repeats come quickly
        s.suggest(f"u{i}")
        s.on_trial_complete(f"u{i}", full_result(top1=50.0 + i / 2))
    ids = [t.user_attrs[record.PROXY_ID] for t in study.trials]
    assert len(study.trials) == 40 and len(set(ids)) == 40
    assert s.tally.repeats > 0  # drawn again, told in the draft study only: the samplers count each point once
    assert len(s.drafts.study.get_trials(states=(TrialState.PRUNED,))) == s.tally.repeats


def test_a_point_whose_proxy_network_was_trained_under_another_spec_is_answered_not_trained(study, tmp_path):
    # At 224 a 4x4 window shifts in stage 3 (a 14x14 map); at the proxy's 4x4 map the window covers it and
    # the shift changes nothing, so both specs train the same proxy network: one training scores both.
    (tmp_path / "tight.yaml").write_text(TIGHT_SPACE)
    s = searcher_for(study, space=str(tmp_path / "tight.yaml"), trials=60)
    for i in range(30):
        if s.suggest(f"t{i}") == Searcher.FINISHED:  # the space is small: the search may exhaust it
            break
        s.on_trial_complete(f"t{i}", full_result(top1=60.0 + i))
    trained = study.get_trials(states=(TrialState.COMPLETE,))
    assert len({t.user_attrs[record.PROXY_ID] for t in trained}) == len(trained) and s.tally.twins > 0
    answered = [t for t in s.drafts.study.get_trials(states=(TrialState.COMPLETE,)) if t.number >= len(study.trials)]
    assert len(answered) == s.tally.twins and {t.values[0] for t in answered} <= {t.values[0] for t in trained}


def test_two_searches_that_draw_one_point_at_the_same_moment_never_both_train_it(study):
    first, second = searcher_for(study), searcher_for(study)
    spec = load_space("tiny").sample(3)
    mine, theirs = study.ask(), study.ask()
    assert first._claim(mine, spec)
    assert not second._claim(theirs, spec)
    assert study.trials[theirs.number].state == TrialState.FAIL
    assert f"trial {mine.number} trains the same proxy network" in study.trials[theirs.number].user_attrs[record.FAIL_REASON]


def test_a_failure_is_recorded_with_its_reason(study):
    s = searcher_for(study)
    s.suggest("t1")
    s.on_trial_complete("t1", {"failure": "diverged: the training loss became nan at epoch 1, step 1", "proxy_top1": float("nan")})
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs[record.FAIL_REASON].startswith("diverged")


def test_baselines_come_first_in_order_inside_the_space_as_samples_and_outside_it_as_specs(study):
    names = ["swin_t", "iddwnet_t", "dwnet_t", "u_pvt_micro", "localmlp_t"]
    s = StudySearcher(study, load_space("unified"), parse_macs("4.5G"), ProxyRecipe(), 10, [preset(n) for n in names])
    StudySearcher(study, load_space("unified"), parse_macs("4.5G"), ProxyRecipe(), 10, [preset(n) for n in names])
    assert len(study.get_trials(states=(TrialState.WAITING,))) == len(names)  # a second search queues none again
    for i, name in enumerate(names):
        config = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", full_result())
        assert config["spec_id"] == preset(name).id
        trial = study.trials[config["trial_number"]]
        assert trial.user_attrs[record.PRESET] == name
        assert bool(trial.params) == load_space("unified").contains(preset(name))  # samples carry parameters
    assert preset("swin_t").id not in {c["spec_id"] for c in [s.suggest("after")]}
    StudySearcher(study, load_space("unified"), parse_macs("4.5G"), ProxyRecipe(), 10, [preset(n) for n in names])
    assert not study.get_trials(states=(TrialState.WAITING,))  # trained presets are not queued again


def test_a_trial_another_search_failed_meanwhile_does_not_crash_this_one(study):
    s = searcher_for(study)
    s.suggest("t1")
    study.tell(study.trials[0].number, state=TrialState.FAIL)  # what a second search's fail_stale_trials does
    s.on_trial_complete("t1", full_result())
    assert s.tally.failed == 1 and study.trials[0].state == TrialState.FAIL
    assert s.suggest("t2")["spec_id"]  # and the search goes on


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp"])
def test_every_sampler_steers_the_search_and_learns_the_budget_without_storing_a_draw_over_it(sampler, study):
    s = searcher_for(study, budget="40M", sampler=make_sampler(sampler, 0, 12))
    for i in range(12):
        config = s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", full_result(top1=50.0 + i))
        assert config["spec_id"]
    assert len({t.user_attrs[record.PROXY_ID] for t in study.trials}) == len(study.trials) == 12
    assert all(t.user_attrs[record.MACS] <= parse_macs("40M") for t in study.trials)
    assert any(name.startswith("s1.mixer.") for name in study.trials[-1].params)
    infeasible = [t for t in s.drafts.study.get_trials(states=(TrialState.COMPLETE,)) if t.constraints[record.BUDGET_CONSTRAINT] > 0]
    assert len(infeasible) == s.tally.over_budget > 0  # what NSGA-II and GP read: COMPLETE trials with a constraint


def test_the_sqlite_lock_wait_is_shorter_than_the_heartbeat_grace(monkeypatch, tmp_path):
    # A live trial whose heartbeat waits for SQLite's lock must not be failed as stale by another search.
    import nas.study

    seen = {}
    monkeypatch.setattr(nas.study, "RDBStorage", lambda url, **kwargs: seen.update(kwargs))
    nas.study.open_storage(f"sqlite:///{tmp_path}/s.db")
    assert seen["engine_kwargs"]["connect_args"]["timeout"] < seen["grace_period"]


def test_a_live_search_fails_and_requeues_the_trials_a_stopped_search_left_running(monkeypatch, tmp_path):
    import nas.search
    import nas.study

    for module in (nas.study, nas.search):
        monkeypatch.setattr(module, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(nas.study, "GRACE_SECONDS", 2)
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=nas.study.open_storage(url), directions=list(record.DIRECTIONS))
    dead = searcher_for(study)
    dead.suggest("lost")  # its search stops here: the trial keeps RUNNING without heartbeats
    live = searcher_for(study)
    heartbeat = nas.search._Heartbeat(live, study)
    heartbeat.start()
    try:
        deadline = time.monotonic() + 20  # failed, then re-queued: two writes of the heartbeat's thread
        while not study.get_trials(states=(TrialState.WAITING,)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        heartbeat.stop()
    assert study.trials[0].state == TrialState.FAIL
    assert study.get_trials(states=(TrialState.WAITING,))  # its point is queued again for this search


# --- the study's goals: a lower MACs bound and a latency limit, learned as the budget is -----------------------
def goal_searcher(goals, sampler="tpe", trials=12, latency=None, queue=()):
    from trials.goals import Goals  # noqa: F401

    study = optuna.create_study(directions=goals.directions)
    recipe = ProxyRecipe(epochs=2)
    return StudySearcher(study, load_space("tiny"), parse_macs("4.5G"), recipe, trials, list(queue), make_sampler(sampler, 0, trials), goals=goals, latency=latency)


def train(s, n):
    for i in range(n):
        config = s.suggest(f"t{i}")
        assert isinstance(config, dict), config
        s.on_trial_complete(f"t{i}", full_result(top1=50.0 + i))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_every_sampler_learns_the_latency_limit_as_the_budget_and_never_trains_a_draw_over_it(sampler, tmp_path):
    from latencylib import write_table

    from nas.latency_source import TableLatency
    from trials.goals import Goals

    goals = Goals.of(parse_macs("4.5G"), max_latency_ms=30)  # at most two attention stages (latencylib)
    s = goal_searcher(goals, sampler, trials=8, latency=TableLatency(write_table(tmp_path / "lat.json")))
    train(s, 8)
    stored = s.study.trials
    assert len(stored) == 8 and all(t.state == TrialState.COMPLETE for t in stored)
    assert all(t.user_attrs[record.LATENCY_MS] <= 30 and t.constraints[record.LATENCY_CONSTRAINT] <= 0 for t in stored)
    assert all(t.user_attrs[record.LATENCY_SOURCE] == "model" for t in stored)
    seen = s.drafts.study.get_trials(states=(TrialState.COMPLETE,))
    # what every sampler reads: COMPLETE trials, each with every constraint of the study (GP needs them all)
    assert all(set(t.constraints) == {record.BUDGET_CONSTRAINT, record.LATENCY_CONSTRAINT} for t in seen)
    over = [t for t in seen if t.constraints[record.LATENCY_CONSTRAINT] > 0]
    assert len(over) == s.tally.over_latency > 0 and s.tally.over_budget == 0
    assert s.tally.refused == {record.LATENCY_CONSTRAINT: s.tally.over_latency}


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_a_macs_band_refuses_the_draws_under_its_lower_end_with_the_same_mechanism(sampler):
    from trials.goals import Goals

    goals = Goals.of(parse_macs("4.5G"), min_macs=parse_macs("40M"))  # the tiny space spans 23M-60M
    s = goal_searcher(goals, sampler, trials=8)
    train(s, 8)
    assert all(t.user_attrs[record.MACS] >= parse_macs("40M") for t in s.study.trials)
    assert all(t.constraints[record.MIN_MACS_CONSTRAINT] <= 0 for t in s.study.trials)
    under = [t for t in s.drafts.study.get_trials(states=(TrialState.COMPLETE,)) if t.constraints[record.MIN_MACS_CONSTRAINT] > 0]
    assert len(under) == s.tally.under_min_macs > 0 and all(t.values[1] < parse_macs("40M") for t in under)


def test_latency_as_a_third_objective_is_stored_on_every_trial_and_handed_to_the_trainable(tmp_path):
    from latencylib import write_table

    from nas.latency_source import TableLatency
    from trials.goals import Goals

    goals = Goals.of(parse_macs("4.5G"), latency=True)
    s = goal_searcher(goals, latency=TableLatency(write_table(tmp_path / "lat.json")))
    config = s.suggest("t1")
    s.on_trial_complete("t1", full_result(top1=61.0))
    (trial,) = s.study.trials
    assert config[record.LATENCY_MS] == trial.user_attrs[record.LATENCY_MS]  # MO-ASHA ranks on it
    assert trial.values == [61.0, trial.user_attrs[record.MACS], trial.user_attrs[record.LATENCY_MS]]
    assert s.study.best_trials == [trial] and len(s.study.directions) == 3


def test_a_point_the_predictor_file_measured_is_taken_as_measured_and_a_queued_one_over_the_limit_is_left_out(tmp_path):
    from latencylib import write_table

    from nas.latency_source import TableLatency
    from trials.goals import Goals

    slow = load_space("tiny").sample(1)
    table = TableLatency(write_table(tmp_path / "lat.json", measured=[(slow, 99.0)]))
    assert table.known(slow).ms == 99.0 and table.known(slow).source == "measured"
    fast = next(spec for spec in map(load_space("tiny").sample, range(50)) if table.known(spec).ms < 20)
    s = goal_searcher(Goals.of(parse_macs("4.5G"), max_latency_ms=200), latency=table, queue=[slow, fast])
    assert s.left_out == [] and s.suggest("t0")["spec_id"] == slow.id
    assert s.study.trials[0].user_attrs[record.LATENCY_SOURCE] == "measured"
    s = goal_searcher(Goals.of(parse_macs("4.5G"), max_latency_ms=20), latency=table, queue=[slow, fast])
    assert [(spec.id, why) for spec, why in s.left_out] == [(slow.id, "99.0 ms is over the latency limit of 20 ms")]


def test_latency_measured_here_is_measured_only_while_no_trial_trains_and_once_per_point(monkeypatch):
    import types

    import searchspace.latency
    from nas.latency_source import MeasuredLatency
    from trials.goals import Goals

    calls = []

    def fake(spec, protocol):  # no timing in tests: a latency from the spec
        calls.append((spec.id, bool(s._stored_trial)))
        return types.SimpleNamespace(ms=10.0 + count(spec).macs / 1e7, latency=types.SimpleNamespace(iqr_ms=0.2))

    monkeypatch.setattr(searchspace.latency, "measure_latency", fake)
    s = goal_searcher(Goals.of(parse_macs("4.5G"), latency=True), latency=MeasuredLatency(), trials=6)
    s.ahead = 2  # two trials run at once: two points drawn and measured together
    first, second = s.suggest("t1"), s.suggest("t2")
    assert isinstance(first, dict) and isinstance(second, dict) and len(calls) == 2
    assert s.suggest("t3") is None  # the next draw needs a measurement and two trials train: Ray asks again
    s.on_trial_complete("t1", full_result())
    assert s.suggest("t3") is None  # one still trains
    s.on_trial_complete("t2", full_result())
    third = s.suggest("t3")  # no trial trains: the held draw is measured now (and the next one with it)
    assert isinstance(third, dict) and not any(training for _, training in calls)
    assert len({spec_id for spec_id, _ in calls}) == len(calls)  # each point measured once
    for t in s.study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs[record.LATENCY_SOURCE] == "measured" and t.user_attrs[record.LATENCY_IQR_MS] == 0.2
        assert t.values[2] == t.user_attrs[record.LATENCY_MS]
