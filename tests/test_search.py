"""`nas search` end to end, as a user runs it: real Optuna study, real Ray, real training (tiny)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from dashboards.optuna_internals import storage_of
from faultlib import free_port, wait_for_port
from trials import record

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
FAST = ["--space", "tiny", "--subset", "256", "--held-out", "512", "--proxy-epochs", "2", "--seed", "0"]


def nas(*args, cwd, timeout=600):
    return subprocess.run([str(BIN / "nas"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def study_in(folder, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/nas_studies.db")


def trained(study):
    """Trials that were trained (not answered from the study, not refused for the budget)."""
    return [t for t in study.trials if t.user_attrs.get(record.EPOCHS) and record.DUPLICATE_OF not in t.user_attrs]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    run = nas("search", "--budget", "4.5G", *FAST, "--trials", "4", "--scheduler", "none", "--json", cwd=folder)
    assert run.returncode == 0, run.stderr[-3000:]
    return folder, json.loads(run.stdout), run


def test_a_search_on_a_tiny_space_stores_four_trained_trials_with_every_attribute(searched):
    folder, summary, run = searched
    study = study_in(folder, summary["study"])
    assert summary["study"] == "tiny-4.5G-fashion-mnist"
    assert len(trained(study)) == 4 and summary["this_run"]["complete"] == 4
    for t in trained(study):
        assert t.state == TrialState.COMPLETE and t.user_attrs[record.EPOCHS] == 2
        for key in (record.SPEC, record.SPEC_ID, record.PARAMS, record.MACS, record.PROXY_TOP1, record.PROXY_LOSS, record.TRAIN_SECONDS, record.IMAGES_PER_SECOND, record.DEVICE):
            assert key in t.user_attrs, key
        assert t.values == [t.user_attrs[record.PROXY_TOP1], t.user_attrs[record.MACS]]
        assert t.constraints[record.BUDGET_CONSTRAINT] <= 0
    assert study.metric_names == list(record.OBJECTIVES)
    for t in trained(study):  # each finished trial carries its exported config as an Optuna artifact
        (meta,) = get_all_artifact_meta(t, storage=storage_of(study))
        assert meta.filename == f"{summary['study']}-trial{t.number}.yaml"
    assert summary["front"] and {p["number"] for p in summary["front"]} <= {t.number for t in trained(study)}
    assert "search" in run.stderr and "complete" in run.stderr  # the live progress goes to stderr with --json


def test_resuming_adds_trials_and_never_trains_a_finished_point_again(searched):
    folder, summary, _ = searched
    before = {t.number: (t.values, t.datetime_complete) for t in trained(study_in(folder, summary["study"]))}
    run = nas("search", "--budget", "4.5G", *FAST, "--trials", "3", "--scheduler", "none", "--json", cwd=folder)
    assert run.returncode == 0, run.stderr[-3000:]
    study = study_in(folder, summary["study"])
    assert len(trained(study)) == 7
    for number, (values, done) in before.items():
        assert (study.trials[number].values, study.trials[number].datetime_complete) == (values, done)
    ids = [t.user_attrs[record.SPEC_ID] for t in trained(study)]
    assert len(ids) == len(set(ids))  # repeats were answered from the study, never trained twice


def test_a_budget_below_the_cheapest_point_is_refused_before_ray_starts(tmp_path):
    start = time.perf_counter()
    run = nas("search", "--budget", "1M", *FAST, cwd=tmp_path)
    assert run.returncode == 2
    assert "cheapest point" in run.stderr and "23.0M" in run.stderr and run.stderr.count("\n") == 1
    assert "Ray" not in run.stdout + run.stderr and time.perf_counter() - start < 30


def test_diverging_trials_are_failed_with_their_reason_and_the_search_goes_on(tmp_path):
    run = nas("search", "--budget", "4.5G", *FAST, "--trials", "3", "--proxy-lr", "1e6", "--scheduler", "none", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    study = study_in(tmp_path, summary["study"])
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 3 and summary["this_run"]["failed"] == 3 and summary["front"] == []
    assert all(t.user_attrs[record.FAIL_REASON].startswith("diverged:") for t in failed)


def test_a_scheduler_that_stops_trials_early_leaves_them_pruned_and_off_the_front(tmp_path):
    run = nas(
        "search", "--budget", "4.5G", "--space", "tiny", "--subset", "256", "--held-out", "512", "--seed", "1", "--proxy-epochs", "3",
        "--trials", "6", "--scheduler", "asha", "--max-concurrent", "1", "--json", cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    study = study_in(tmp_path, summary["study"])
    pruned = [t for t in trained(study) if t.state == TrialState.PRUNED]
    complete = [t for t in trained(study) if t.state == TrialState.COMPLETE]
    assert pruned, "ASHA stopped no trial; the fidelity check needs one"
    assert all(t.user_attrs[record.EPOCHS] < 3 and "stopped early" in t.user_attrs[record.FAIL_REASON] for t in pruned)
    assert all(t.user_attrs[record.EPOCHS] == 3 for t in complete)
    assert {p["number"] for p in summary["front"]} <= {t.number for t in complete}


def test_a_trial_cut_by_the_time_limit_is_recorded_as_cut_and_its_point_waits_for_the_next_run(tmp_path):
    long = ["--space", "tiny", "--subset", "6000", "--proxy-epochs", "20", "--seed", "0", "--scheduler", "none"]
    run = nas("search", "--budget", "4.5G", *long, "--trials", "1", "--time-limit", "20s", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["this_run"]["cut_by_time_limit"] == 1 and summary["this_run"]["pruned"] == 0
    study = study_in(tmp_path, summary["study"])
    (cut,) = study.get_trials(states=(TrialState.FAIL,))
    assert cut.user_attrs[record.CUT_BY_TIME_LIMIT] is True and cut.user_attrs[record.FAIL_REASON].startswith("cut by the time limit after ")
    (queued,) = study.get_trials(states=(TrialState.WAITING,))  # the next run on the study trains it first
    assert queued.user_attrs[record.SPEC_ID] == cut.user_attrs[record.SPEC_ID]


def test_a_search_joins_a_running_ray_cluster_by_address(tmp_path):
    port = free_port()
    temp = Path("/tmp") / f"rayt{os.getpid()}"  # Ray's socket paths must stay short
    # `ray start --block` in a session of its own: stopping it stops this cluster only (`ray stop` would stop
    # every Ray on the machine)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", f"--temp-dir={temp}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        assert wait_for_port(port, head, timeout=180), "the Ray head did not start"
        run = nas("search", "--budget", "4.5G", *FAST, "--trials", "2", "--scheduler", "none", "--address", f"127.0.0.1:{port}", cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"Ray cluster 127.0.0.1:{port}" in run.stdout
        assert len(trained(study_in(tmp_path, "tiny-4.5G-fashion-mnist"))) == 2
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_an_unreachable_ray_address_is_one_line_and_exit_2(tmp_path):
    run = nas("search", "--budget", "4.5G", *FAST, "--address", f"127.0.0.1:{free_port()}", cwd=tmp_path, timeout=300)
    assert run.returncode == 2 and "cannot reach the Ray cluster" in run.stderr and "Traceback" not in run.stderr


def test_a_search_with_latency_measures_every_trained_point_here_and_has_a_three_objective_front(tmp_path):
    run = nas("search", "--budget", "4.5G", "--latency", *FAST, "--trials", "4", "--scheduler", "none", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    study = study_in(tmp_path, summary["study"])
    assert summary["study"] == "tiny-4.5G-fashion-mnist-latency" and len(study.directions) == 3
    assert study.metric_names == ["proxy top-1 (%)", "MACs", "latency (ms)"]
    assert study.user_attrs[record.STUDY_LATENCY]["source"] == "measured" and study.user_attrs[record.STUDY_LATENCY]["device"]["cpu"]
    for t in trained(study):
        assert t.user_attrs[record.LATENCY_SOURCE] == "measured" and t.values[2] == t.user_attrs[record.LATENCY_MS] > 0
    assert summary["this_run"]["complete"] == 4 and summary["this_run"]["latencies_measured"] >= 4
    assert summary["front"] and all(p["latency_ms"] > 0 for p in summary["front"])
    assert "measured here while no trial trains" in run.stderr


def test_a_search_within_a_macs_band_and_a_latency_limit_from_a_predictor_file_trains_only_points_within_both(tmp_path):
    from latencylib import write_table

    write_table(tmp_path / "lat-test.json")
    run = nas(
        "search", "--budget", "40M-4.5G", "--max-latency", "30ms", "--latency-table", "lat-test.json", *FAST, "--trials", "3",
        "--scheduler", "none", "--json", cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["study"] == "tiny-40M-4.5G-fashion-mnist-max30ms"
    study = study_in(tmp_path, summary["study"])
    assert len(study.directions) == 2 and study.user_attrs[record.STUDY_LATENCY]["table"] == "lat-test.json"
    for t in trained(study):
        assert t.user_attrs[record.MACS] >= 40e6 and t.user_attrs[record.LATENCY_MS] <= 30 and t.user_attrs[record.LATENCY_SOURCE] == "model"
    drawn = summary["this_run"]
    assert drawn["draws_under_min_macs"] + drawn["draws_over_latency"] > 0
    again = nas("search", "--budget", "40M-4.5G", "--max-latency", "20ms", "--latency-table", "lat-test.json", *FAST,
                "--study", summary["study"], cwd=tmp_path)
    assert again.returncode == 2 and "latency <= 30 ms, not to" in again.stderr
