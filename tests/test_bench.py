"""The tabular benchmark: a table of trained points, and searches replayed against it on a simulated clock
with the real searcher, samplers and schedulers. One end-to-end build through Ray on a tiny space."""

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from dashboards.pareto import REFERENCE
from nas.bench import Table, TablePoint, table_points
from nas.replay import TableSearcher, replay
from nas.searcher import StudySearcher
from nas.study import space_digest
from searchspace import ArchSpec, NasError, count, load_space, parse_macs
from datalib import fashion_like
from test_trials import write_idx
from trials import ProxyRecipe
from trials import record

BIN = Path(sys.executable).parent
RECIPE = ProxyRecipe()


STEPS = 15  # training steps an epoch, as the shipped table's (1000 images in batches of 64)
MID = round(math.ceil(STEPS / 2) / STEPS, 3)  # where the trainable evaluates mid-epoch (trials/train.py): 0.533
START, EVALUATION = 1.5, 0.4  # made-up seconds of Ray's start of a trial and of one held-out evaluation


def synthetic_table(n=24, seed=0, failed=(), space="tiny", wall=True):
    """A table of `n` points of a shipped space with made-up curves shaped as the trainable makes them: an
    evaluation at the first whole step past half an epoch (MID) and at the end of each epoch; top-1 grows over
    the two epochs, seconds grow with the MACs, and the wall clock adds Ray's start and each evaluation to the
    training (`wall`: tables built before it was recorded have none); the points in `failed` diverge after
    their first epoch."""
    sp = load_space(space)
    rng = random.Random(seed)
    points = []
    for i, spec in enumerate(table_points(sp, parse_macs("4.5G"), n, seed, RECIPE)):
        params, macs = count(spec)
        final, seconds = rng.uniform(40, 90), 2.0 + macs / 1e8 + rng.random()
        progress = [MID, 1, 1 + MID, 2]
        train = [seconds * p / 2 for p in progress]
        curve = {"progress": progress, "proxy_top1": [final * (0.7 + 0.15 * p) for p in progress], "train_seconds": train}
        if wall:
            curve[record.WALL_SECONDS] = [START + t + EVALUATION * (k + 1) for k, t in enumerate(train)]
        reason = None
        if i in failed:
            curve, reason = {k: v[:2] for k, v in curve.items()}, "diverged: the training loss became nan at epoch 2, step 3"
        points.append(TablePoint(
            id=spec.id, proxy_id=RECIPE.proxy_id(spec), spec=spec.to_dict(), params=params,
            macs=macs, curve=curve, zero_cost={"naswot": rng.random(), "macs": float(macs), "params": float(params)},
            fail_reason=reason,
        ))
    return Table(
        space=space, space_sha256=space_digest(sp), budget=parse_macs("4.5G"), data="synthetic", recipe=RECIPE,
        evaluations_per_epoch=2, study="synthetic", points=points,
    )


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


def test_the_same_seed_replays_the_same_search_and_another_seed_another(table):
    for sampler in ("tpe", "nsga2"):
        first, again = (replay(table, sampler, "pareto", seed=3, budget_seconds=60) for _ in range(2))
        assert first.log == again.log and first.trace == again.trace
        assert [t.params for t in first.study.trials] == [t.params for t in again.study.trials]
        assert replay(table, sampler, "pareto", seed=4, budget_seconds=60).log != first.log


def arrivals(run):
    """{trial id: [(seconds after its start, progress)]} of the results a replay's scheduler heard."""
    starts, heard = {}, {}
    for seconds, trial, point, what in run.log:
        if what == "start":
            starts[trial] = seconds
        elif what.startswith("result"):
            heard.setdefault(trial, []).append(seconds - starts[trial])
    return starts, heard


@pytest.mark.parametrize("wall", [True, False])
def test_each_result_arrives_at_its_start_plus_the_wall_clock_seconds_the_table_measured(wall):
    table = synthetic_table(wall=wall)
    for workers in (1, 2, 3):
        for scheduler in ("pareto", "none"):
            run = replay(table, "random", scheduler, seed=0, workers=workers, budget_seconds=80)
            starts, heard = arrivals(run)
            points = {trial: point for _, trial, point, what in run.log if what == "start"}
            for trial, seconds in heard.items():
                curve = table.point(points[trial]).curve
                clock = curve[record.WALL_SECONDS] if wall else curve["train_seconds"]
                if scheduler == "pareto":  # evaluated at the rungs (0.5, 1) and the end, never at 1.5
                    expected = [clock[0], clock[1], clock[3] - EVALUATION * wall]
                else:  # at the end alone, without the three evaluations before it that it never makes
                    expected = [clock[3] - 3 * EVALUATION * wall]
                assert seconds == pytest.approx(expected[: len(seconds)])
            assert sum(1 for s in starts.values() if s == 0.0) == workers  # every worker starts at once
            ends = sorted(seconds for seconds, _, _, what in run.log if what in ("complete", "pruned", "fail"))
            later = sorted(s for s in starts.values() if s > 0)
            assert later and later == ends[: len(later)]  # a worker takes the next trial as one ends, never earlier


@pytest.mark.parametrize("scheduler", ["pareto", "asha"])
def test_a_trial_stopped_at_the_first_rung_is_stopped_half_way_through_its_first_epoch(table, scheduler):
    """The trainable reports its mid-epoch evaluation at MID (0.533 epochs, not 0.5): the replay hands it to
    the scheduler, so the rung at half an epoch decides and a trial it stops costs about half an epoch."""
    run = replay(table, "random", scheduler, seed=0, budget_seconds=200)
    pruned = [t for t in run.study.trials if t.state == TrialState.PRUNED]
    at_first_rung = [t for t in pruned if t.user_attrs[record.EPOCHS] == MID]
    assert at_first_rung and all(t.user_attrs[record.EPOCHS] in (MID, 1) for t in pruned)
    assert run.stopped_per_rung == {0.5: len(at_first_rung), 1.0: len(pruned) - len(at_first_rung)}
    assert run.summary()["stopped_per_rung"] == {"0.5": len(at_first_rung), "1": len(pruned) - len(at_first_rung)}


def test_a_fully_trained_point_is_complete_and_a_stopped_one_pruned_in_the_replayed_study(table):
    run = replay(table, "tpe", "pareto", seed=1, budget_seconds=120)
    trials = run.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    states = {t.state for t in trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials:
        point = table.point(t.user_attrs[record.SPEC_ID])
        heard = [i for i, p in enumerate(point.curve["progress"]) if p in t.user_attrs[record.CURVE]["progress"]]
        assert heard == [i for i in range(len(heard))] or heard[-1] == len(point.curve["progress"]) - 1
        for key, values in point.curve.items():  # the table's evaluations the trainable makes (rungs, end), as far as it ran
            if key != record.WALL_SECONDS:  # simulated: less the evaluations not made
                assert t.user_attrs[record.CURVE][key] == pytest.approx([values[i] for i in heard])
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs[record.EPOCHS] == 2 and t.values == [point.top1, point.macs]
        else:
            assert t.user_attrs[record.EPOCHS] < 2 and "stopped early" in t.user_attrs[record.FAIL_REASON]
    complete = [table.point(t.user_attrs[record.SPEC_ID]) for t in trials if t.state == TrialState.COMPLETE]
    assert run.hypervolume == pytest.approx(table.hypervolume(complete)) and run.hypervolume > 0


def test_a_point_that_failed_in_training_fails_in_the_replay_and_an_exhausted_table_ends_the_search():
    small = synthetic_table(n=5, failed=(2,))
    run = replay(small, "random", "none", seed=0, workers=2, budget_seconds=1e6)
    assert run.exhausted and run.tally.complete == 4 and run.tally.failed == 1
    (failed,) = run.study.get_trials(states=(TrialState.FAIL,))
    assert failed.user_attrs[record.SPEC_ID] == small.points[2].id and failed.user_attrs[record.FAIL_REASON].startswith("diverged")
    assert run.hypervolume == pytest.approx(small.hypervolume(small.points))  # every complete point was found


def test_a_draw_is_answered_by_an_untried_table_point_and_the_sampler_learns_that_point_where_it_lies(table):
    space = table.load_space()
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    searcher = TableSearcher(table, study, space, optuna.samplers.TPESampler(seed=0, n_startup_trials=3), seed=0)
    ids = []
    for i in range(10):
        config = searcher.suggest(str(i))
        point = table.point(config["spec_id"])
        ids.append(point.id)
        result = {"progress": 2, "epoch": 2, record.PROXY_TOP1: point.top1, record.TRAIN_SECONDS: point.seconds, record.MACS: point.macs}
        searcher.on_trial_complete(str(i), result)
    assert len(set(ids)) == 10  # never the same point twice
    coordinates = {json.dumps(space.params_of(ArchSpec.model_validate(p.spec)), sort_keys=True) for p in table.points}
    learned = searcher.drafts.study.get_trials(states=(TrialState.COMPLETE,))
    assert learned and all(json.dumps(t.params, sort_keys=True) in coordinates for t in learned)
    assert len(searcher.fidelity) == 10 and all(0 <= gower <= 1 for gower, _ in searcher.fidelity)


def test_a_table_round_trips_through_its_file_byte_for_byte(table, tmp_path):
    size = table.save(tmp_path / "t.json.gz")
    loaded = Table.load(tmp_path / "t.json.gz")
    assert loaded == table and size == (tmp_path / "t.json.gz").stat().st_size
    loaded.save(tmp_path / "again.json.gz")
    assert (tmp_path / "again.json.gz").read_bytes() == (tmp_path / "t.json.gz").read_bytes()


def test_a_table_built_on_another_space_file_or_a_file_that_is_no_table_is_refused(table, tmp_path):
    other = Table(**{**{k: getattr(table, k) for k in table.__dataclass_fields__}, "space_sha256": "0" * 64})
    with pytest.raises(NasError, match="another version of"):
        replay(other, "random", "none")
    (tmp_path / "bad.json.gz").write_text("not gzip")
    with pytest.raises(NasError, match="is not a benchmark table"):
        Table.load(tmp_path / "bad.json.gz")
    with pytest.raises(NasError, match="nas bench build --export"):
        Table.load(tmp_path / "missing.json.gz")


def test_the_tables_hypervolume_is_normalised_to_its_fronts_box_up_to_the_printed_reference_point():
    t = synthetic_table(n=8)
    front = t.front()
    assert t.hypervolume(front) == pytest.approx(t.hypervolume(t.points))  # only the front counts
    best, cheapest = max(front, key=lambda p: p.top1), min(front, key=lambda p: p.macs)
    assert t.hypervolume([best]) == pytest.approx(REFERENCE * (REFERENCE - 1))  # the front's one end: a strip
    top1, macs = t.reference_point()
    assert top1 == pytest.approx(best.top1 - REFERENCE * (best.top1 - cheapest.top1))
    assert macs == pytest.approx(cheapest.macs + REFERENCE * (best.macs - cheapest.macs))
    assert REFERENCE * (REFERENCE - 1) < t.hypervolume(t.points) <= REFERENCE**2


def test_queued_points_train_once_a_diverged_one_is_not_retried_and_an_interrupted_one_is(tmp_path):
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    space = load_space("tiny")
    points = table_points(space, parse_macs("4.5G"), 4, 0, RECIPE)

    def searcher():
        return StudySearcher(study, space, parse_macs("4.5G"), RECIPE, 4, points)

    first = searcher()
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 4
    for i, outcome in enumerate(("complete", "diverged", "interrupted")):
        first.suggest(str(i))
        if outcome == "complete":
            first.on_trial_complete(str(i), {"progress": 2, "epoch": 2, record.PROXY_TOP1: 50.0, record.TRAIN_SECONDS: 1.0})
        elif outcome == "diverged":
            first.fail(str(i), "diverged: the training loss became nan at epoch 1, step 2")
        else:
            first.fail(str(i), "interrupted: the search stopped before the trial finished")
    again = searcher()  # a rerun queues what is still to train: the interrupted point, and the one never started
    waiting = [t.user_attrs[record.SPEC_ID] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(waiting) == sorted([points[2].id, points[3].id])
    assert again.suggest("x")["spec_id"] in waiting


def nas(*args, cwd):
    return subprocess.run([str(BIN / "nas"), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_nas_bench_build_trains_each_point_once_through_ray_and_exports_a_table_to_replay(tmp_path):
    data = tmp_path / "idx"
    data.mkdir()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 320)  # no test split: 128 training images held out, enough to tell learning from chance
    write_idx(data, rng.integers(0, 60, (320, 12, 12)) + 60 * labels[:, None, None], labels, compress=False)
    build = [
        "bench", "build", "--space", "tiny", "--points", "4", "--data", str(data), "--subset", "64", "--held-out", "128",
        "--proxy-batch-size", "16", "--storage", f"sqlite:///{tmp_path}/bench.db", "--export", "table.json.gz", "--json",
    ]
    run = nas(*build, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["points"] == summary["trained_this_run"] == summary["zero_cost_scored_this_run"] == 4
    table = Table.load(tmp_path / "table.json.gz")
    recipe = ProxyRecipe(subset=64, val_size=128, batch_size=16)
    assert [p.id for p in table.points] == [s.id for s in table_points(load_space("tiny"), parse_macs("4.5G"), 4, 0, recipe)]
    for p in table.points:
        assert p.complete and p.curve["progress"] == [0.5, 1, 1.5, 2]  # every half epoch, although no scheduler
        assert p.curve["train_seconds"] == sorted(p.curve["train_seconds"]) and p.seconds > 0
        wall = p.curve[record.WALL_SECONDS]  # at the driver: Ray's start, training, evaluations
        assert wall == sorted(wall) and all(w > t for w, t in zip(wall, p.curve["train_seconds"]))
        assert {"naswot", "synflow", "grad_norm", "macs", "params"} <= set(p.zero_cost)
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{tmp_path}/bench.db")
    assert len(study.trials) == 4 and {t.state for t in study.trials} == {TrialState.COMPLETE}

    rerun = nas(*build, cwd=tmp_path)  # resumes: nothing left to train or score, the same table
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = json.loads(rerun.stdout)
    assert again["trained_this_run"] == again["zero_cost_scored_this_run"] == 0
    assert len(optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{tmp_path}/bench.db").trials) == 4
    assert Table.load(tmp_path / "table.json.gz") == table

    replayed = nas("bench", "run", "--table", "table.json.gz", "--sampler", "random", "--seeds", "2", "--json", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    runs = json.loads(replayed.stdout)["runs"]
    assert len(runs) == 2 and all(r["complete"] >= 1 and r["trace"][-1][1] > 0 for r in runs)


@pytest.mark.slow
def test_a_replay_against_a_searchs_own_curves_makes_every_scheduler_decision_that_search_made(tmp_path):
    """A real search (MO-ASHA, two trials at once through Ray, synthetic images), its trials' curves as a table,
    and a replay of the same seed against that table: the same points in the same order, each stopped at the
    same rung or completed.

    Real trials race: whichever result reaches the scheduler first decides who goes on, and here trials are
    a fraction of a second of training inside seconds of Ray starting them. The replay orders results by the
    wall clock each curve recorded at the search's driver, from the moment its trial's worker was freed (the
    last evaluation of the trial before it: nas.searcher.StudySearcher.started) to the moment the driver
    handled the evaluation; a replayed trial starts as its worker is freed, so the replay puts every result
    at the time the driver handled it, in the driver's own order, however loaded the machine. What could
    still make the two differ, and why it does not here:
    - the draws: a model-based sampler (TPE) draws a little after its worker is freed, so in a real search it
      may see a trial end that a replay, which draws at once, does not; random draws depend on nothing that
      ended, so this search draws at random (tests above replay TPE and NSGA-II against synthetic tables);
    - the pairing of freed workers and new trials: the driver hands a freed worker to the next trial in the
      order the workers were freed, as the replay does, unless a trial starts (Ray starts a process for it:
      seconds) before the end of a trial that finished first has been handled (milliseconds);
    - a point the search trained twice or a failed training redrawn: none here (tiny space, six draws, no
      divergence), and the replay raises where a curve it needs was never measured."""
    data = fashion_like(tmp_path / "idx", images=400)
    storage = f"sqlite:///{tmp_path}/search.db"
    run = nas(
        "search", "--budget", "4.5G", "--space", "tiny", "--seed", "3", "--sampler", "random", "--scheduler", "pareto",
        "--max-concurrent", "2", "--trials", "6", "--data", str(data), "--subset", "80", "--held-out", "256",
        "--proxy-batch-size", "16", "--storage", storage, "--json", cwd=tmp_path,
    )  # 5 steps an epoch: the mid-epoch evaluation at 0.6 epochs
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name=json.loads(run.stdout)["study"], storage=storage)
    replayed = replay(Table.of_search(study, load_space("tiny")), "random", "pareto", seed=3, workers=2, budget_seconds=1e9, trials=6)

    def decisions(trials):
        return [(t.user_attrs[record.SPEC_ID], t.state.name, t.user_attrs[record.EPOCHS]) for t in trials]

    searched = decisions(study.trials)
    assert {state for _, state, _ in searched} == {"COMPLETE", "PRUNED"} and (0.6 in {e for _, _, e in searched})
    assert decisions(replayed.study.trials) == searched
    stopped = [e for _, state, e in searched if state == "PRUNED"]
    assert replayed.stopped_per_rung == {0.5: stopped.count(0.6), 1.0: stopped.count(1)}


def test_nas_bench_run_without_a_table_says_how_to_build_one(tmp_path):
    run = nas("bench", "run", "--table", "nowhere.json.gz", cwd=tmp_path)
    assert run.returncode == 2 and "nas bench build --export nowhere.json.gz" in run.stderr
