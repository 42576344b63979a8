"""A Ray Tune searcher backed by an Optuna study, correct about fidelity and budget.

Ray's stock OptunaSearch tells Optuna COMPLETE for every trial the scheduler stops, mixing 1-epoch
and fully trained networks on one Pareto front. Here only trials trained for the full proxy budget
are COMPLETE; a trial stopped early is PRUNED with its epochs and last metrics kept; a failed one is
FAIL with its reason. A point over the MACs budget is never trained: it is told PRUNED with a positive
`set_constraint`, so samplers learn the budget and `study.best_trials` agrees with it, and the sampler
draws again. A point the study has already scored is answered from the study, not trained twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from searchspace import ArchSpec, SearchSpace, count, format_macs, preset_by_id
from trials import record as R

_PROCESS = f"{socket.gethostname()}:{os.getpid()}"
MAX_DRAWS = 500  # draws per suggestion before giving up on finding a new in-budget point


@dataclass
class Tally:
    """What the search has done so far, for the progress display and the summary."""

    started: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    over_budget: int = 0
    duplicates: int = 0
    exhausted: bool = False  # MAX_DRAWS draws in a row were over budget or already scored
    events: list = field(default_factory=list)  # (trial number, what happened) for the display

    @property
    def running(self) -> int:
        return self.started - self.complete - self.pruned - self.failed


@contextmanager
def _unless_finished_elsewhere(searcher: "StudySearcher", trial_id: str, trial: optuna.Trial):
    """Another search may have failed this trial as stale (its heartbeat missed the grace period on a
    stalled machine) and re-queued its point: the study already has the last word, so the outcome
    here is dropped instead of crashing the search."""
    try:
        yield
    except optuna.exceptions.UpdateFinishedTrialError:
        searcher._live.pop(trial_id, None)
        searcher.tally.failed += 1
        searcher.tally.events.append((trial.number, "failed", "failed meanwhile by another search (no heartbeat)"))


class StudySearcher(Searcher):
    """Suggests architectures drawn by the study's sampler; reports every outcome back to the study."""

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        budget: int,
        epochs: int,
        max_trials: int,
        baselines: list[ArchSpec] = (),
        before_complete=None,
    ):
        super().__init__(metric=None, mode=None)
        self.study, self.space, self.budget, self.epochs = study, space, budget, epochs
        self.max_trials = max_trials
        self.before_complete = before_complete  # e.g. attach the exported config while the trial is open
        self.tally = Tally()
        self._live: dict[str, optuna.Trial] = {}
        self._last: dict[str, dict] = {}
        self._presets = preset_by_id()
        self._lock = threading.Lock()
        for spec in baselines:  # the papers' networks first, through Optuna's queue
            if self._scored(spec.id):
                continue
            name = self._presets.get(spec.id)
            if space.contains(spec):  # a real sample of the space: the sampler sees its parameters
                study.enqueue_trial(space.params_of(spec), user_attrs={R.PRESET: name})
            else:  # no parameters to give: the trial carries its spec
                study.enqueue_trial({}, user_attrs={R.PRESET: name, R.SPEC: json.dumps(spec.to_dict(), sort_keys=True)})

    def __getstate__(self) -> dict:
        # Tune pickles its searcher for Tuner.restore; a search resumes through the study instead, so the
        # pickled copy keeps no live state (the study, its storage and locks are not picklable).
        return {"max_trials": self.max_trials}

    # --- Ray's side ------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None:
        if self.tally.started >= self.max_trials:
            return Searcher.FINISHED
        for _ in range(MAX_DRAWS):
            trial, spec = self._draw()
            if spec is None:
                continue
            with self._lock:
                self._live[trial_id] = trial
                self.tally.started += 1
            return {"spec": spec.to_dict(), "trial_number": trial.number, "spec_id": spec.id}
        self.tally.exhausted = True  # the summary says so; ending the search is the honest answer
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last[trial_id] = result

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:
            return  # the reason arrives through `fail` from the callback, just after (Tune's order)
        result = result or self._last.get(trial_id) or {}
        trial = self._live.get(trial_id)
        if trial is None:
            return
        if "failure" in result:
            return self.fail(trial_id, result["failure"])
        with _unless_finished_elsewhere(self, trial_id, trial):
            self._complete(trial_id, trial, result)

    def _complete(self, trial_id: str, trial: optuna.Trial, result: dict) -> None:
        epochs = int(result.get("epoch") or 0)
        self._record_metrics(trial, result)
        with self._lock:
            self._live.pop(trial_id)
            if epochs >= self.epochs:
                macs = trial.user_attrs[R.MACS]
                if self.before_complete is not None:
                    try:
                        self.before_complete(trial)
                    except OSError as exc:  # a full disk must not cost the trained result
                        trial.set_user_attr("artifact_error", str(exc)[:300])
                self.study.tell(trial, [result["proxy_top1"], macs])
                self.tally.complete += 1
                self.tally.events.append((trial.number, "complete", result["proxy_top1"], macs))
            else:
                run = _epochs_run(result)
                why = "stopped early (scheduler or time limit)" if run else "stopped before its first epoch"
                trial.set_user_attr(R.FAIL_REASON, f"{why} (after {run} of {self.epochs} epochs)")
                self.study.tell(trial, state=TrialState.PRUNED)
                self.tally.pruned += 1
                self.tally.events.append((trial.number, "pruned", run))

    def fail(self, trial_id: str, reason: str) -> None:
        """Record a trial as FAIL with its reason (the trainable's report, or Ray's error)."""
        trial = self._live.get(trial_id)
        if trial is None:
            return
        with _unless_finished_elsewhere(self, trial_id, trial), self._lock:
            self._live.pop(trial_id, None)
            self._record_metrics(trial, self._last.get(trial_id, {}))
            trial.set_user_attr(R.FAIL_REASON, reason[:500])
            self.study.tell(trial, state=TrialState.FAIL)
            self.tally.failed += 1
            self.tally.events.append((trial.number, "failed", reason))

    def fail_unfinished(self, reason: str) -> None:
        for trial_id in list(self._live):
            self.fail(trial_id, reason)

    # --- the study's side -------------------------------------------------------------------------------
    def _draw(self) -> tuple[optuna.Trial, ArchSpec | None]:
        """Ask the study for a point; record it; tell it at once when it is over budget or already scored."""
        trial = self.study.ask()
        self.beat(trial)
        if R.SPEC in trial.user_attrs:  # a preset outside the space, or a re-queued interrupted trial
            spec = R.spec_of(trial)
        else:
            spec = self.space.suggest(trial)
        params, macs = count(spec)
        preset = self._presets.get(spec.id)
        trial.set_user_attr(R.SEARCH_PROCESS, _PROCESS)
        trial.set_user_attr(R.SPEC, json.dumps(spec.to_dict(), sort_keys=True))
        trial.set_user_attr(R.SPEC_ID, spec.id)
        trial.set_user_attr(R.PARAMS, params)
        trial.set_user_attr(R.MACS, macs)
        if preset:
            trial.set_user_attr(R.PRESET, preset)
        if R.BUDGET_CONSTRAINT not in trial.constraints:
            trial.set_constraint(R.BUDGET_CONSTRAINT, macs - self.budget)
        if macs > self.budget:
            trial.set_user_attr(R.FAIL_REASON, f"not trained: {format_macs(macs)} MACs is over the budget of {format_macs(self.budget)}")
            self.study.tell(trial, state=TrialState.PRUNED)
            self.tally.over_budget += 1
            return trial, None
        earlier = self._scored(spec.id, exclude=trial.number)
        if earlier is not None:
            self._answer_from(trial, earlier)
            return trial, None
        return trial, spec

    def _scored(self, spec_id: str, exclude: int | None = None) -> optuna.trial.FrozenTrial | None:
        """The trial of the study that trained this point, pruned it, or is training it now. Two searches
        on one study that draw the same point at once both see each other; the lower number trains it."""
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for t in self.study.get_trials(deepcopy=False, states=states):
            if t.number == exclude or t.user_attrs.get(R.SPEC_ID) != spec_id or R.DUPLICATE_OF in t.user_attrs:
                continue
            if t.state == TrialState.COMPLETE or t.user_attrs.get(R.EPOCHS):
                return t
            if t.state == TrialState.RUNNING and (exclude is None or t.number < exclude):
                return t
        return None

    def _answer_from(self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> None:
        trial.set_user_attr(R.DUPLICATE_OF, earlier.number)
        if earlier.state == TrialState.RUNNING:
            trial.set_user_attr(R.FAIL_REASON, f"not trained: trial {earlier.number} is training the same point")
        for key in (R.PROXY_TOP1, R.PROXY_LOSS, R.EPOCHS, R.TRAIN_SECONDS, R.IMAGES_PER_SECOND, R.DEVICE, R.FAIL_REASON):
            if key in earlier.user_attrs:
                trial.set_user_attr(key, earlier.user_attrs[key])
        if earlier.state == TrialState.COMPLETE:
            self.study.tell(trial, earlier.values)
        else:
            self.study.tell(trial, state=TrialState.PRUNED)
        self.tally.duplicates += 1

    def beat(self, trial: optuna.Trial | None = None) -> None:
        """Record a heartbeat for one trial, or for every trial in training (see nas.search._Heartbeat):
        a killed search's trials stop beating and are failed by the next search on the study."""
        storage = self.study._storage  # the study's RDBStorage; Optuna has no public accessor
        for t in [trial] if trial is not None else list(self._live.values()):
            try:
                storage.record_heartbeat(t._trial_id)
            except Exception:  # a trial finished meanwhile, or a storage hiccup: the next beat will do
                pass

    @staticmethod
    def _record_metrics(trial: optuna.Trial, result: dict) -> None:
        for key in (R.PROXY_TOP1, R.PROXY_LOSS, R.TRAIN_SECONDS, R.IMAGES_PER_SECOND, R.DEVICE):
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        trial.set_user_attr(R.EPOCHS, _epochs_run(result))


def _epochs_run(result: dict) -> float:
    """Epochs trained when the result was taken: `progress` (fractional mid-epoch), else whole `epoch`s."""
    return result.get("progress", int(result.get("epoch") or 0))
