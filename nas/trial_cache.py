"""Optuna's cache of a study's trials, kept on disk between processes: a command on a study of thousands
of trials reads from the database only what changed since a process on this machine last read it.

Every study on an RDBStorage reads through Optuna's trial cache: its first read loads every trial (about
3.5 ms a trial through the ORM: 35 s at 10,000), later reads only the unfinished and the new ones. A finished
trial never changes in Optuna (writing to one raises UpdateFinishedTrialError), so a copy of that cache stays
true: it is saved to a file per study in the user's cache folder (nas.cache: only this user can write what is
read there, as loading a pickle runs code) and restored by the next process when it was written by this
Optuna version for this database and study, which one query checks (its newest trial is there, unchanged);
otherwise the study is read whole again and the file rewritten.
Imports optuna, nas.cache and dashboards.optuna_internals (Optuna's private cache) only.
"""

from __future__ import annotations

import hashlib
import pickle
import sys

import optuna

from dashboards.optuna_internals import CachedStorage, trial_id

from . import cache

FORMAT = 2
# Reading a trial of the unified space from the database costs about 3.5 ms of CPU, writing it into the file
# once more about 40 us (the 10,000-trial study of benchmarks/scale.py: 35 s to read, a 35 MB file written
# in 0.4 s), so the file is rewritten when the finished trials it lacks reach a fiftieth of the study; until
# then each process reads those few from the database.
REWRITE_SHARE = 50


class DiskCachedStorage(CachedStorage):
    """An RDBStorage read through Optuna's trial cache, restored from and saved to a file per study.
    `identity` names the database (the SQLite file's absolute path, or the server URL without password)."""

    def __init__(self, backend: optuna.storages.RDBStorage, identity: str):
        super().__init__(backend)
        self.identity = identity
        self._folder = f"trials/{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        self._on_disk: dict[int, int] = {}  # study id -> finished trials its file holds

    def before_read(self, study_id: int) -> None:
        with self.lock:
            if study_id not in self._on_disk:
                self._on_disk[study_id] = self._restore(study_id)

    def after_read(self, study_id: int) -> None:
        with self.lock:
            finished = self.finished_in_cache(study_id)
            if (finished - self._on_disk[study_id]) * REWRITE_SHARE >= max(1, finished) and self._save(study_id):
                self._on_disk[study_id] = finished

    def _path(self, study_id: int) -> str:
        return f"{self._folder}/study-{study_id}.pickle"

    def _restore(self, study_id: int) -> int:
        """Load the study's file when it is this user's own, of this Optuna and this database; returns the
        finished trials it held."""
        if self.cached_trials(study_id):
            return 0  # this process made trials before it read any: it reads them all once
        data = cache.read(self._path(study_id))  # None unless only this user could have written it
        try:
            saved = pickle.loads(data) if data else {}
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError):
            return 0
        mine = (saved.get("format"), saved.get("optuna"), saved.get("identity")) == (FORMAT, optuna.__version__, self.identity)
        if not mine or not self._belongs(study_id, saved) or not self.restore_study_cache(study_id, saved["info"]):
            return 0  # another Optuna's cache, or another database or study under the same id
        return self.finished_in_cache(study_id)

    def _belongs(self, study_id: int, saved: dict) -> bool:
        newest, number, started = saved["newest"]
        try:
            if self.backend.get_study_name_from_id(study_id) != saved["study"]:
                return False
            trial = self.backend.get_trial(newest)
        except KeyError:
            return False
        return trial.number == number and trial.datetime_start == started and trial.state.is_finished()

    def _save(self, study_id: int) -> bool:
        trials = self.cached_trials(study_id)
        finished = [t for t in trials.values() if t.state.is_finished()]
        if not finished:
            return False
        try:
            name = self.backend.get_study_name_from_id(study_id)
        except KeyError:  # deleted meanwhile
            return False
        newest = max(finished, key=trial_id)
        _share_distributions(trials.values())
        saved = {
            "format": FORMAT, "optuna": optuna.__version__, "identity": self.identity, "study": name,
            "newest": (trial_id(newest), newest.number, newest.datetime_start), "info": self.study_cache(study_id),
        }
        return cache.write(self._path(study_id), pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL))


def _share_distributions(trials) -> None:
    """Make equal distributions and parameter names one object each: pickle then writes each once (a file
    of 10,000 trials of the unified space loads in 0.4 s of CPU; with the 850,000 distributions each its
    own object, about seven times slower)."""
    shared: dict = {}
    for t in trials:
        t.distributions = {sys.intern(k): shared.setdefault((k, d), d) for k, d in t.distributions.items()}
        t.params = {sys.intern(k): v for k, v in t.params.items()}
