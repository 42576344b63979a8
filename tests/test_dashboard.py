"""`nas dashboard` in a real headless browser: Debian's Chromium loads the page served for a study."""

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna_dashboard import get_note

from dashboards.optuna_internals import live_trial, study_id
from faultlib import free_port, wait_for_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.slow  # make test installs Debian's chromium; without it these tests fail, never skip
BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def dashboard(results_study, tmp_path):
    url, study = results_study
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "nas"), "dashboard", "--storage", url, "--port", str(port), "--artifact-dir", str(tmp_path / "artifacts")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert wait_for_port(port, server), server.stdout.read()
    yield url, study, port, tmp_path
    server.terminate()
    server.wait(timeout=30)


def browse(url, tmp_path, *extra):
    profile = tmp_path / f"chromium-{time.time_ns()}"
    done = subprocess.run(
        [CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", *extra, url],
        capture_output=True, text=True, timeout=120,
    )
    return done.stdout


def test_the_dashboard_renders_the_study_and_its_pareto_front_in_chromium(dashboard):
    url, study, port, tmp_path = dashboard
    page = f"http://127.0.0.1:{port}/dashboard/studies/{study_id(study)}"
    dom = browse(page, tmp_path, "--dump-dom")
    assert study.study_name in dom
    assert "Pareto Front" in dom and "js-plotly-plot" in dom
    assert "proxy top-1 (%)" in dom and "MACs" in dom  # the objectives are named
    assert "hypervolume over trials" in dom  # our saved figures
    shot = tmp_path / "dashboard.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,1800")
    assert shot.exists() and shot.stat().st_size > 20_000


def test_a_plain_http_client_gets_the_bundle_when_it_sends_accept_encoding(dashboard):
    _, _, port, _ = dashboard
    request = urllib.request.Request(f"http://127.0.0.1:{port}/static/bundle.js", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and int(response.headers["Content-Length"]) > 100_000


def test_the_dashboard_adds_notes_and_exported_configs_to_the_study(dashboard):
    url, study, _, _ = dashboard
    study = optuna.load_study(study_name=study.study_name, storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    note = get_note(live_trial(study, done[0]))
    assert note.startswith(f"## Trial {done[0].number}") and "stage 1:" in note and "MACs" in note
    configs = {meta.filename for meta in get_all_artifact_meta(study)}
    assert {f"{study.study_name}-trial{t.number}.yaml" for t in done} <= configs
