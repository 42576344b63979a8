"""Faults a search survives, injected for real: kill -9, concurrent searches on one study (SQLite and
PostgreSQL), out-of-memory trials, a killed Ray worker. Each records its outcome in the fault ledger
printed at the end (NAS_FAULT_REPEAT=N injects each N times; benchmarks/faults.py does so)."""

import json
import os
import shutil
import tempfile
from pathlib import Path
import random
import time

import optuna
import pytest

from faultlib import (
    FAST,
    STUDY,
    Postgres,
    duplicates,
    kill_tree,
    lost,
    nas,
    snapshot,
    sqlite_ok,
    start_nas,
    wait_for,
    worker_pids,
)
from trials import record

pytestmark = pytest.mark.slow
ROUNDS = pytest.mark.parametrize("round_", range(int(os.environ.get("NAS_FAULT_REPEAT", 1))))


def search_args(trials):
    return ["search", "--budget", "4.5G", *FAST, "--trials", str(trials)]


@ROUNDS
def test_kill_9_during_training_loses_no_finished_trial_and_the_rerun_resumes(tmp_path, fault_ledger, round_):
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    search = start_nas(*search_args(8), cwd=tmp_path)
    assert wait_for(lambda: snapshot(url).complete and worker_pids(search), 300), search.stdout.read()
    time.sleep(random.uniform(0.2, 3.0))  # a random moment of the next trial's training
    kill_tree(search)
    before = snapshot(url)
    time.sleep(8)  # longer than the grace period: 3 missed heartbeats of 2 s
    rerun = nas(*search_args(2), cwd=tmp_path)
    after = snapshot(url)
    interrupted = "trials left running by a stopped search (re-queued)" in rerun.stdout
    report = (lost(before, after), duplicates(after))
    ok = rerun.returncode == 0 and report == (0, 0) and sqlite_ok(tmp_path / "nas_studies.db")
    fault_ledger.append(("kill -9 during training", ok, *report))
    assert ok, rerun.stdout + rerun.stderr
    assert after.states.get("RUNNING", 0) == 0
    if before.states.get("RUNNING"):
        assert interrupted and after.states["FAIL"] >= 1


@ROUNDS
def test_kill_9_during_storage_writes_leaves_a_sound_study(tmp_path, fault_ledger, round_):
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    db = tmp_path / "nas_studies.db"
    search = start_nas(*search_args(6), "--baselines", cwd=tmp_path)  # baselines: many writes at the start
    assert wait_for(db.exists, 120)
    time.sleep(random.uniform(0.0, 4.0))  # creating the study, enqueueing baselines, asking, telling
    kill_tree(search)
    before = snapshot(url)
    time.sleep(8)
    rerun = nas(*search_args(2), "--baselines", cwd=tmp_path)
    after = snapshot(url)
    report = (lost(before, after), duplicates(after))
    ok = rerun.returncode == 0 and report == (0, 0) and sqlite_ok(db)
    fault_ledger.append(("kill -9 during storage writes", ok, *report))
    assert ok, rerun.stdout + rerun.stderr


def concurrent_searches(url, folder, trials=4):
    # the production heartbeat (30 s, stale after 90 s): the 2 s of the kill tests could let one live
    # search fail the other's trials as stale on a loaded machine
    first = start_nas(*search_args(trials), "--storage", url, "--max-concurrent", "1", cwd=folder, heartbeat=30)
    second = start_nas(*search_args(trials), "--storage", url, "--max-concurrent", "1", cwd=folder, heartbeat=30)
    outputs = [p.communicate(timeout=900)[0] for p in (first, second)]
    study = optuna.load_study(study_name=STUDY, storage=url)
    trained = [t for t in study.trials if t.user_attrs.get(record.EPOCHS) and record.DUPLICATE_OF not in t.user_attrs]
    processes = {t.user_attrs[record.SEARCH_PROCESS] for t in trained}
    return (first.returncode, second.returncode), processes, duplicates(snapshot(url)), outputs


@ROUNDS
def test_two_searches_on_one_sqlite_study_both_contribute_and_never_train_a_point_twice(tmp_path, fault_ledger, round_):
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    codes, processes, dups, outputs = concurrent_searches(url, tmp_path)
    ok = codes == (0, 0) and len(processes) == 2 and dups == 0 and sqlite_ok(tmp_path / "nas_studies.db")
    fault_ledger.append(("two searches on one SQLite study", ok, 0, dups))
    assert ok, outputs


@pytest.fixture(scope="module")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # outside pytest's root-only folders: the server runs as postgres
    server = Postgres(root)
    try:
        url = server.start()
    except RuntimeError as exc:  # make test installs Debian's postgresql: without it this test fails, never skips
        pytest.fail(f"no PostgreSQL server (sudo apt-get install postgresql): {exc}")
    yield url
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@ROUNDS
def test_two_searches_on_one_postgresql_study_both_contribute_and_never_train_a_point_twice(postgres, tmp_path, fault_ledger, round_):
    study_name = f"pg-{round_}-{time.time_ns()}"
    first = start_nas(*search_args(4), "--storage", postgres, "--study", study_name, "--max-concurrent", "1", cwd=tmp_path, heartbeat=30)
    second = start_nas(*search_args(4), "--storage", postgres, "--study", study_name, "--max-concurrent", "1", cwd=tmp_path, heartbeat=30)
    outputs = [p.communicate(timeout=900)[0] for p in (first, second)]
    study = optuna.load_study(study_name=study_name, storage=postgres)
    trained = [t for t in study.trials if t.user_attrs.get(record.EPOCHS) and record.DUPLICATE_OF not in t.user_attrs]
    dups = duplicates(snapshot(postgres, study_name))
    ok = (first.returncode, second.returncode) == (0, 0) and len({t.user_attrs[record.SEARCH_PROCESS] for t in trained}) == 2 and dups == 0
    fault_ledger.append(("two searches on one PostgreSQL study", ok, 0, dups))
    assert ok, outputs
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in study.trials)  # no row left half-written
    assert "pg-secret-pw" not in "".join(outputs)  # the password never reaches the output


@ROUNDS
def test_out_of_memory_trials_fail_with_their_reason_and_pareto_ignores_them(tmp_path, fault_ledger, round_):
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    run = nas(
        "search", "--budget", "4.5G", "--space", "tiny", "--subset", "2048", "--held-out", "512", "--proxy-batch-size", "2048",
        "--scheduler", "none", "--trials", "2", "--max-memory-per-trial", "200M", "--json", cwd=tmp_path,
    )
    summary = json.loads(run.stdout) if run.returncode == 0 else {}
    study = optuna.load_study(study_name=STUDY, storage=url)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    ok = run.returncode == 0 and len(failed) == 2 and all("out of memory" in t.user_attrs[record.FAIL_REASON] for t in failed)
    fault_ledger.append(("trial out of memory", ok, 0, 0))
    assert ok, run.stderr[-2000:]
    assert summary["this_run"]["failed"] == 2 and summary["front"] == []
    pareto = json.loads(nas("pareto", "--json", cwd=tmp_path).stdout)
    assert pareto["front"] == []


@ROUNDS
def test_a_killed_ray_worker_fails_its_trial_and_the_search_goes_on(tmp_path, fault_ledger, round_):
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    args = ["search", "--budget", "4.5G", "--space", "tiny", "--subset", "2048", "--held-out", "512", "--scheduler", "none", "--trials", "3", "--max-concurrent", "1"]
    search = start_nas(*args, cwd=tmp_path)
    assert wait_for(lambda: worker_pids(search), 300)
    time.sleep(1.0)
    os.kill(worker_pids(search)[0], 9)
    output = search.communicate(timeout=900)[0]
    study = optuna.load_study(study_name=STUDY, storage=url)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    ok = search.returncode == 0 and len(failed) == 1 and failed[0].user_attrs[record.FAIL_REASON].startswith("Ray:") and len(complete) >= 2
    fault_ledger.append(("Ray worker killed", ok, 0, duplicates(snapshot(url))))
    assert ok, output[-3000:]
