"""Every use of Optuna's private API, in one place: what Optuna offers no public way to do. The rest of the code
uses Optuna's public API only, and tests/test_library_internals.py fails loudly when one of these changes
(pyproject.toml bounds Optuna's major version).

- A study's storage and ids, a trial's id: Optuna keeps them private (`_storage`, `_study_id`, `_trial_id`),
  yet its public storage API, optuna-dashboard's notes and a live `Trial` are addressed by them.
- Optuna's trial cache (`_CachedStorage`, the wrapper `optuna.load_study` puts around every RDBStorage), opened
  to nas.trial_cache, which keeps it on disk between processes.
- The system attribute under which `enqueue_trial` keeps a queued trial's parameters.

Here, in the lowest layer that needs it (dashboards reads notes and a study's storage). Imports optuna only.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import FrozenTrial

_FIXED_PARAMS = "fixed_params"  # optuna.study.Study.enqueue_trial's system attribute


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through (with a trial cache: the cache)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (not its number in the study)."""
    return trial._trial_id


def live_trial(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """The Trial object of a stored trial (optuna-dashboard's notes address Trials)."""
    return optuna.Trial(study, trial_id(trial))


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """A live trial as it is stored now."""
    return storage_of(trial.study).get_trial(trial_id(trial))


def new_trial(study: optuna.Study, template: FrozenTrial) -> optuna.Trial:
    """A stored trial made from `template` in one write (parameters, attributes, constraints), opened as a live
    Trial; `study.add_trial` writes the same but gives no handle to a trial still running."""
    storage = storage_of(study)
    return optuna.Trial(study, storage.create_new_trial(study_id(study), template_trial=template))


def queued_params(trial: optuna.Trial) -> dict | None:
    """The parameters `enqueue_trial` fixed for a trial the study took from its queue (None: not queued so)."""
    return storage_of(trial.study).get_trial_system_attrs(trial_id(trial)).get(_FIXED_PARAMS)


def waiting_params(trial: FrozenTrial) -> dict | None:
    """The parameters `enqueue_trial` fixed for a trial still WAITING in the queue (None: none fixed)."""
    return trial.system_attrs.get(_FIXED_PARAMS)


def record_heartbeat(trial: optuna.Trial) -> None:
    """Record a heartbeat of a running trial (Optuna records them itself only inside study.optimize)."""
    storage_of(trial.study).record_heartbeat(trial_id(trial))


class CachedStorage(_CachedStorage):
    """Optuna's cache of an RDBStorage's trials (a finished trial is read once; later reads fetch only new and
    unfinished trials), opened to a subclass that keeps it between processes: hooks around each read of the
    database, and one study's cache as a plain dict of fields to save and to restore."""

    @property
    def backend(self) -> RDBStorage:
        return self._backend

    @property
    def lock(self):
        """Held by every read and write of the cache; the hooks run outside it."""
        return self._lock

    def before_read(self, study_id: int) -> None:
        """Called before the study's new and unfinished trials are read from the database."""

    def after_read(self, study_id: int) -> None:
        """Called after they were read into the cache."""

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        self.before_read(study_id)
        super()._read_trials_from_remote_storage(study_id)
        self.after_read(study_id)

    def cached_trials(self, study_id: int) -> dict[int, FrozenTrial]:
        """The study's trials in the cache, by number (hold `lock`)."""
        return self._studies[study_id].trials if study_id in self._studies else {}

    def finished_in_cache(self, study_id: int) -> int:
        """How many of the study's cached trials are finished, so never read again (hold `lock`)."""
        info = self._studies.get(study_id)
        return len(info.trials) - len(info.unfinished_trial_ids) if info else 0

    def study_cache(self, study_id: int) -> dict:
        """The study's cache as a dict of fields, to save (hold `lock`)."""
        return dict(vars(self._studies[study_id]))

    def restore_study_cache(self, study_id: int, fields: dict) -> bool:
        """Put a saved study cache back (hold `lock`); False when its fields are not this Optuna's."""
        info = _StudyInfo()
        if set(fields) != set(vars(info)):
            return False
        vars(info).update(fields)
        self._studies[study_id] = info
        self._add_trials_to_cache(study_id, list(info.trials.values()))
        return True
