"""Optuna's cache of a study's trials, kept on disk between processes: a command on a study of thousands
of trials reads from the database only what changed since a process on this machine last read it.

Every study on an RDBStorage reads through Optuna's `_CachedStorage`: its first read loads every trial
(about 3.5 ms a trial through the ORM: 35 s at 10,000), later reads only the unfinished and the new ones.
A finished trial never changes in Optuna (writing to one raises UpdateFinishedTrialError), so a copy of
that cache stays true: it is saved to a file per study and restored by the next process once one query
has checked that the file belongs to this database (its newest trial is there, unchanged).
Imports optuna only.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, _CachedStorage
from optuna.storages._cached_storage import _StudyInfo

FORMAT = 1
# Reading a trial of the unified space from the database costs about 3.5 ms of CPU, writing it into the file
# once more about 40 us (the 10,000-trial study of benchmarks/scale.py: 35 s to read, a 35 MB file written
# in 0.4 s), so the file is rewritten when the finished trials it lacks reach a fiftieth of the study; until
# then each process reads those few from the database.
REWRITE_SHARE = 50


def cache_folder() -> Path:
    """NAS_CACHE_DIR, else the user's cache folder."""
    if os.environ.get("NAS_CACHE_DIR"):
        return Path(os.environ["NAS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas-unified" / "trials"


class DiskCachedStorage(_CachedStorage):
    """An RDBStorage read through Optuna's trial cache, restored from and saved to a file per study.
    `identity` names the database (the SQLite file's absolute path, or the server URL without password)."""

    def __init__(self, backend: RDBStorage, identity: str, folder: Path | None = None):
        super().__init__(backend)
        self._folder = (folder or cache_folder()) / hashlib.sha256(identity.encode()).hexdigest()[:16]
        self._on_disk: dict[int, int] = {}  # study id -> finished trials its file holds

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            if study_id not in self._on_disk:
                self._on_disk[study_id] = self._restore(study_id)
        super()._read_trials_from_remote_storage(study_id)
        with self._lock:
            info = self._studies[study_id]
            finished = len(info.trials) - len(info.unfinished_trial_ids)
            if (finished - self._on_disk[study_id]) * REWRITE_SHARE >= max(1, finished) and self._save(study_id):
                self._on_disk[study_id] = finished

    def _path(self, study_id: int) -> Path:
        return self._folder / f"study-{study_id}.pickle"

    def _restore(self, study_id: int) -> int:
        """Load the study's file when it belongs to this database; returns the finished trials it held."""
        if study_id in self._studies and self._studies[study_id].trials:
            return 0  # this process made trials before it read any: it reads them all once
        try:
            with open(self._path(study_id), "rb") as f:
                saved = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
            return 0
        fields = saved.get("info", {}) if saved.get("format") == FORMAT else {}
        if set(fields) != set(vars(_StudyInfo())) or not self._belongs(study_id, saved):
            return 0  # another Optuna's cache, or another database or study under the same id
        info = _StudyInfo()
        vars(info).update(fields)
        self._studies[study_id] = info
        self._add_trials_to_cache(study_id, list(info.trials.values()))
        return len(info.trials) - len(info.unfinished_trial_ids)

    def _belongs(self, study_id: int, saved: dict) -> bool:
        trial_id, number, started = saved["newest"]
        try:
            if self._backend.get_study_name_from_id(study_id) != saved["study"]:
                return False
            trial = self._backend.get_trial(trial_id)
        except KeyError:
            return False
        return trial.number == number and trial.datetime_start == started and trial.state.is_finished()

    def _save(self, study_id: int) -> bool:
        info = self._studies[study_id]
        finished = [t for t in info.trials.values() if t.state.is_finished()]
        try:
            name = info.name or self._backend.get_study_name_from_id(study_id)
        except KeyError:  # deleted meanwhile
            return False
        if not finished:
            return False
        newest = max(finished, key=lambda t: t._trial_id)
        _share_distributions(info.trials.values())
        saved = {
            "format": FORMAT, "optuna": optuna.__version__, "study": name,
            "newest": (newest._trial_id, newest.number, newest.datetime_start), "info": vars(info),
        }
        part = self._path(study_id).with_suffix(f".{os.getpid()}.part")
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            with open(part, "wb") as f:
                pickle.dump(saved, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(part, self._path(study_id))  # a reader sees the old file or the new one, never half
        except OSError:  # a full or read-only disk costs speed, never a result
            part.unlink(missing_ok=True)
            return False
        return True


def _share_distributions(trials) -> None:
    """Make equal distributions and parameter names one object each: pickle then writes each once (a file
    of 10,000 trials of the unified space loads in 0.4 s of CPU; with the 850,000 distributions each its
    own object, about seven times slower)."""
    shared: dict = {}
    for t in trials:
        t.distributions = {sys.intern(k): shared.setdefault((k, d), d) for k, d in t.distributions.items()}
        t.params = {sys.intern(k): v for k, v in t.params.items()}
