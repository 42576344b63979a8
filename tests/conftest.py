import os
import random

import pytest
import torch

_SKIPPED: list[str] = []
# Tables are read as a pipe without COLUMNS gets them (160 columns: nas.console); pytest-xdist's workers
# set COLUMNS=80, which would cut the tables the tests read.
os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True, scope="session")
def _trial_cache(tmp_path_factory):
    """The trial caches of this session's studies (nas.trial_cache) in a folder of its own, for every
    process the tests start too, not in the user's cache folder."""
    os.environ["NAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("trial-cache"))


@pytest.fixture(autouse=True)
def _seeded():
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def proxy_data_dir(tmp_path_factory):
    """The default data's folder: Debian's Fashion-MNIST where the package is installed, otherwise a learnable
    synthetic stand-in in the same IDX format, which every `nas` command the tests run takes through $NAS_DATA
    (so no test depends on a system package to run)."""
    from datalib import fashion_like
    from trials.data import DEBIAN_FASHION_MNIST

    if DEBIAN_FASHION_MNIST.exists() and not os.environ.get("NAS_TEST_SYNTHETIC_DATA"):  # set it to try the stand-in
        yield DEBIAN_FASHION_MNIST
        return
    folder = fashion_like(tmp_path_factory.mktemp("data") / "fashion-mnist")
    os.environ["NAS_DATA"] = str(folder)
    yield folder
    os.environ.pop("NAS_DATA", None)


def pytest_runtest_logreport(report):
    if report.skipped:
        _SKIPPED.append(report.nodeid)
    if report.when == "call":
        _FAULTS.extend(tuple(value) for key, value in report.user_properties if key == "fault")


def pytest_sessionfinish(session, exitstatus):
    """A test skipped is a test that does not exist: the run fails (CI runs what the README's test command runs)."""
    if _SKIPPED and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED:
        terminalreporter.section("skipped tests fail the run")
        for nodeid in _SKIPPED:
            terminalreporter.write_line(f"skipped: {nodeid}")
    _fault_summary(terminalreporter)


@pytest.fixture
def results_study(tmp_path):
    """A finished study in a SQLite file, written by the real searcher with chosen scores: four searched
    points and two presets (swin_t scored low, so the front beats it)."""
    import optuna

    from nas.searcher import StudySearcher
    from nas.study import open_search_study, open_storage
    from searchspace import load_space, parse_macs, preset
    from trials import ProxyRecipe

    url = f"sqlite:///{tmp_path}/nas_studies.db"
    space = load_space("tiny")
    recipe = ProxyRecipe(subset=1024, val_size=256)  # a recipe nobody calibrated (the default's calibration is shipped)
    study, _ = open_search_study(open_storage(url), "tiny-4.5G-fashion-mnist", space, parse_macs("4.5G"), "fashion-mnist", recipe)
    searcher = StudySearcher(
        study, space, parse_macs("4.5G"), recipe, 8, [preset("swin_t"), preset("u_swin_micro")],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    scores = [40.0, 75.0, 61.0, 70.0, 80.0, 55.0]
    for i, top1 in enumerate(scores):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"epoch": 2, "proxy_top1": top1, "proxy_loss": 1.0, "train_seconds": 1.0, "images_per_second": 10.0, "device": "cpu"})
    searcher.suggest("failing")
    searcher.fail("failing", "diverged: the training loss became nan at epoch 1, step 2")
    return url, optuna.load_study(study_name=study.study_name, storage=url)


# --- the fault suite's ledger: every injected fault, printed at the end of the session -------------------
_FAULTS: list[tuple[str, bool, int, int]] = []


class _Ledger:
    """Where a fault test writes its fault: on its report, which reaches the process that prints the summary
    (with parallel test workers, not the one that ran the test)."""

    def __init__(self, node):
        self.node = node

    def append(self, fault: tuple) -> None:
        self.node.user_properties.append(("fault", tuple(fault)))


@pytest.fixture
def fault_ledger(request):
    return _Ledger(request.node)


def _fault_summary(terminalreporter):
    if not _FAULTS:
        return
    tr = terminalreporter
    tr.section("fault suite")
    kinds: dict[str, list] = {}
    for name, survived, lost, dups in _FAULTS:
        kinds.setdefault(name, []).append((survived, lost, dups))
    for name, rows in kinds.items():
        tr.write_line(
            f"{name:45s} injected {len(rows)}, survived {sum(r[0] for r in rows)}, "
            f"finished trials lost {sum(r[1] for r in rows)}, duplicates {sum(r[2] for r in rows)}"
        )
    tr.write_line(
        f"{'total':45s} injected {len(_FAULTS)}, survived {sum(f[1] for f in _FAULTS)}, "
        f"finished trials lost {sum(f[2] for f in _FAULTS)}, duplicates {sum(f[3] for f in _FAULTS)}"
    )
