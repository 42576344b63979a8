"""A search on a Ray cluster of two nodes started with `ray start` on this machine (a head and a worker,
each with its own ports and temp folder): trials land on both nodes and record which; the worker node
killed mid-search fails its trial with the reason and queues the point again, and the search goes on;
every finished trial's config reaches the study whichever node trained it."""

import os
import secrets
from pathlib import Path

import optuna
import pytest

from dashboards.optuna_internals import storage_of
from faultlib import STUDY, RayNode, env, start_nas, wait_for
from trials import record

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster(tmp_path):
    """Head and worker, one CPU each, with token authentication (Ray's default for `ray start`) from a token
    of the test's own; the nodes' workers import this checkout."""
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    ray_env = {
        **env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",  # a dead node is noticed in seconds
    }
    head = RayNode(ray_env)
    head.wait_ready()
    worker = RayNode(ray_env, address=head.address)
    worker.wait_ready()
    yield head, worker, ray_env
    worker.kill()
    head.kill()


def test_a_search_on_two_nodes_survives_losing_the_worker_node(cluster, tmp_path):
    head, worker, ray_env = cluster
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    args = ["search", "--budget", "4.5G", "--space", "tiny", "--subset", "1024", "--held-out", "512", "--proxy-epochs", "2", "--scheduler", "none",
            "--trials", "6", "--max-concurrent", "2", "--address", head.address, "--storage", url, "--artifact-dir",
            str(tmp_path / "artifacts")]
    search = start_nas(*args, cwd=tmp_path, extra_env=ray_env)

    def nodes_of_finished() -> set:
        try:
            trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        except KeyError:
            return set()
        return {t.user_attrs.get(record.NODE) for t in trials}

    def training_on_both() -> bool:
        """Two trials in training (one a node: a CPU each) and the worker's in its train call; a trial actor
        that has just finished keeps its process a moment, so its process alone does not say it trains."""
        try:
            running = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:
            return False
        return len(running) == 2 and bool(worker.pids("ray::ImplicitFunc.train"))

    # both nodes train, then the worker node dies while it trains a trial
    assert wait_for(lambda: len(nodes_of_finished()) == 2 and training_on_both(), 600, every=0.5), search.stdout.read()
    worker.kill()
    output = search.communicate(timeout=900)[0]
    assert search.returncode == 0, output[-3000:]

    trials = optuna.load_study(study_name=STUDY, storage=url).trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(failed) == 1 and failed[0].user_attrs[record.FAIL_REASON].startswith("Ray:"), output[-3000:]
    retried = [t for t in trials if t.user_attrs.get(record.RETRY_OF) == failed[0].number]
    assert len(retried) == 1 and retried[0].user_attrs[record.SPEC_ID] == failed[0].user_attrs[record.SPEC_ID]
    assert retried[0].state.name in ("COMPLETE", "WAITING")  # trained by the head after the loss, or first in the next run
    assert len({t.user_attrs[record.NODE] for t in complete}) == 2 and len(complete) >= 4
    for t in complete:  # each finished trial's exported config is on the study, from whichever node trained it
        (meta,) = optuna.artifacts.get_all_artifact_meta(t, storage=storage_of(optuna.load_study(study_name=STUDY, storage=url)))
        assert meta.filename == record.config_file(STUDY, t.number) and (tmp_path / "artifacts" / meta.artifact_id).exists()
    assert "(its point is queued again)" in output
