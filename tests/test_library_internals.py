"""Optuna's, timm's and Ray's private APIs are used in one module per library (dashboards/optuna_internals.py,
searchspace/timm_internals.py, nas/ray_internals.py), and each use is exercised here against the installed
library, so that an upgrade that changes one fails here, by name, rather than somewhere in a search."""

import ast
import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dashboards import optuna_internals as O

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = {"optuna", "optuna_dashboard", "timm", "ray"}
INTERNALS = {"dashboards/optuna_internals.py", "searchspace/timm_internals.py", "nas/ray_internals.py"}
# Private attributes of these libraries' objects that our code once reached for (a study's `_storage` ...)
PRIVATE_ATTRIBUTES = {"_storage", "_study_id", "_trial_id", "_backend", "_studies", "_cached_storage", "_get_trials", "_attn"}
# Replaced by the one Pareto-front implementation of issue 15 (another change): until it lands, the only exception.
PENDING = "_get_pareto_front_trials_by_trials"


def private_uses(path: Path) -> list[str]:
    """Imports of a library's private module or name, its private attributes, and Ray's stub trials."""
    found, lines = [], path.read_text().splitlines()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            names = [part for part in node.module.split(".") if part.startswith("_")]
            names += [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Import):
            names = [part for a in node.names if a.name.split(".")[0] in LIBRARIES for part in a.name.split(".") if part.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES and not (
            isinstance(node.value, ast.Name) and node.value.id == "self"  # our own object's attribute
        ):
            names = [node.attr]
        elif isinstance(node, ast.Call) and any(k.arg == "stub" for k in node.keywords):
            names = ["stub="]
        if names and PENDING not in lines[node.lineno - 1]:
            found += [f"{node.lineno}: {name}" for name in names]
    return found


def test_private_library_apis_are_used_only_in_the_one_module_per_library():
    offenders = {}
    for layer in ("searchspace", "trials", "dashboards", "nas", "benchmarks"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            uses = private_uses(path)
            if where not in INTERNALS and uses:
                offenders[where] = uses
    assert offenders == {}


# --- Optuna ------------------------------------------------------------------------------------------------
@pytest.fixture
def study(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db")
    return optuna.create_study(study_name="s", storage=O.CachedStorage(storage), directions=["maximize", "minimize"])


def test_optunas_study_storage_ids_and_queue_are_reached_as_optuna_stores_them(study):
    assert O.storage_of(study).get_study_id_from_name("s") == O.study_id(study)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    template = optuna.trial.create_trial(state=TrialState.RUNNING, params={"x": 0.5}, distributions=dist, user_attrs={"a": 1})
    trial = O.new_trial(study, template)
    assert isinstance(trial, optuna.Trial) and trial.params == {"x": 0.5} and trial.user_attrs == {"a": 1}
    assert O.frozen(trial).number == trial.number and O.trial_id(O.frozen(trial)) == O.trial_id(trial)
    O.record_heartbeat(trial)  # the RDBStorage's heartbeat of a running trial
    assert O.queued_params(trial) is None
    study.tell(trial, [1.0, 2.0])
    assert O.live_trial(study, study.trials[0]).number == 0

    study.enqueue_trial({"x": 0.25})
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert O.waiting_params(waiting) == {"x": 0.25}
    queued = study.ask()
    assert O.queued_params(queued) == {"x": 0.25}


class Hooked(O.CachedStorage):
    def __init__(self, backend):
        super().__init__(backend)
        self.calls = []

    def before_read(self, study_id):
        with self.lock:  # the hooks run outside the lock
            self.calls.append(("before", study_id, self.finished_in_cache(study_id)))

    def after_read(self, study_id):
        with self.lock:
            self.calls.append(("after", study_id, self.finished_in_cache(study_id)))


def test_optunas_trial_cache_reads_through_the_hooks_and_a_study_cache_saved_is_restored_whole(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=url)
    study.add_trials([optuna.trial.create_trial(value=float(i)) for i in range(3)])
    study.enqueue_trial({})
    first = Hooked(optuna.storages.RDBStorage(url))
    sid = first.get_study_id_from_name("s")
    assert len(first.get_all_trials(sid)) == 4
    assert first.calls == [("before", sid, 0), ("after", sid, 3)]  # the WAITING trial is not finished
    assert first.backend.get_trial(O.trial_id(first.cached_trials(sid)[0])).value == 0.0
    with first.lock:
        saved = first.study_cache(sid)

    second = Hooked(optuna.storages.RDBStorage(url))
    with second.lock:
        assert second.cached_trials(sid) == {}
        assert not second.restore_study_cache(sid, {**saved, "a field of another Optuna": None})
        assert second.restore_study_cache(sid, saved)
        assert second.finished_in_cache(sid) == 3
    assert [t.value for t in second.get_all_trials(sid)] == [0.0, 1.0, 2.0, None]
    assert isinstance(second.get_trial(O.trial_id(study.trials[1])).datetime_start, datetime.datetime)


# --- timm ---------------------------------------------------------------------------------------------------
def test_timms_feature_take_indices_reads_indices_as_timms_models_do():
    from searchspace.timm_internals import feature_take_indices

    assert feature_take_indices(4, None) == ([0, 1, 2, 3], 3)
    assert feature_take_indices(4, 2) == ([2, 3], 3)  # an int: the last n
    assert feature_take_indices(4, (0, -1)) == ([0, 3], 3)


def test_timms_swin_window_attention_maps_channels_last_maps_to_their_shape():
    import torch
    from timm.models.swin_transformer import SwinTransformerBlock

    from searchspace.timm_internals import swin_window_attention

    block = SwinTransformerBlock(32, (14, 14), num_heads=2, window_size=7, shift_size=3)
    x = torch.randn(2, 14, 14, 32)
    assert swin_window_attention(block)(x).shape == x.shape


# --- Ray ----------------------------------------------------------------------------------------------------
def test_rays_stand_in_trial_carries_its_id_and_config_to_a_scheduler():
    from ray.tune.schedulers import TrialScheduler

    from nas.ray_internals import stand_in_trial
    from nas.scheduler import make_scheduler

    trial = stand_in_trial("00007", {"spec_id": "abc"})
    assert trial.trial_id == "00007" and trial.config == {"spec_id": "abc"}
    scheduler = make_scheduler("asha", 2)
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, {"progress": 0.5, "epoch": 0, "proxy_top1": 50.0, "macs": 1}) == TrialScheduler.CONTINUE
    assert stand_in_trial().trial_id != stand_in_trial().trial_id
