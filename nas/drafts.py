"""Where the sampler draws: a private in-memory copy of the stored study, so that only points to train
become stored trials.

Optuna stores every trial it asks for. Drawing in the stored study would keep every draw over the budget
and every repeat as a trial of its own (hundreds per trained point in a tight budget), and a repeat told
COMPLETE would count twice for the samplers and the dashboard. Here the sampler draws in memory, in a copy
that mirrors the stored study's running and finished trials before each suggestion; what the samplers
see of a draw that is not trained:
- over the budget: COMPLETE with a positive budget constraint (TPE, NSGA-II and GP all read constraints
  of COMPLETE trials; NSGA-II and GP read no others) and the median top-1 of the feasible trials as its
  placeholder score, so it neither attracts nor repels the objective model;
- a point already trained (or in training): PRUNED: TPE then ranks it with the worse trials, so it stops
  proposing the one point it already knows best; NSGA-II and GP ignore it (they have the observation);
- a point whose proxy network was trained under another spec (a proxy twin): COMPLETE with the twin's
  top-1 and its own MACs (and latency), a real observation that costs no training.
Where latency is an objective, an over-budget draw, never measured, takes the median latency of the feasible
trials as its placeholder too.
The copy lives as long as the search process; a resumed search relearns the budget from its first
draws, and on a large study models only the stored trials on the Pareto front and the latest WINDOW
others (see `sync`). Imports optuna, the trial record, dashboards.pareto (the front) and
dashboards.optuna_internals only.
"""

from __future__ import annotations

import statistics
from datetime import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from dashboards.optuna_internals import trial_id
from dashboards.pareto import front_trials
from trials import record

# A trial the samplers read; FAIL and WAITING trials are read by none.
_MIRRORED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
# Optuna's TPE spends time linear in the trials it models on each group of the space's parameters (the
# unified space has about 80): 13 s of CPU per suggestion with 10,000 trials, 0.3 s with 100. A resumed
# search lets it model the front, which holds what is good, and the latest WINDOW trials, where the
# search is; the trials it adds while it runs come on top.
WINDOW = 300


class DraftStudy:
    """An in-memory study with the stored study's directions and trials, where `sampler` draws."""

    def __init__(self, stored: optuna.Study, sampler: optuna.samplers.BaseSampler,
                 objectives: tuple[str, ...] = (record.PROXY_TOP1, record.MACS)):
        self.stored = stored
        self.objectives = objectives  # the study's, by the keys of a point's measures (nas.searcher.StudySearcher)
        self.storage = optuna.storages.InMemoryStorage()
        self.study = optuna.create_study(storage=self.storage, sampler=sampler, directions=stored.directions)
        self._study_id = self.storage.get_study_id_from_name(self.study.study_name)
        self._mirror: dict[int, int] = {}  # stored trial number -> draft trial id
        self._state: dict[int, TrialState] = {}

    def sync(self, trials: list[FrozenTrial]) -> None:
        """Mirror the stored trials (`study.get_trials()`, by number): new ones are added, finished ones
        updated. The first time, of a study of more than WINDOW trials, the front and the latest WINDOW."""
        if not self._mirror and len(trials) > WINDOW:
            front = front_trials(trials, self.stored.directions)
            keep = {t.number for t in front} | {t.number for t in trials[-WINDOW:]}
            trials = [t for t in trials if t.number in keep or t.state == TrialState.RUNNING]
        for t in trials:
            known = self._mirror.get(t.number)
            if known is None:
                if t.state in _MIRRORED and t.params:  # a trial without parameters tells a sampler nothing
                    self._mirror[t.number] = self.storage.create_new_trial(self._study_id, template_trial=_copy(t))
                    self._state[t.number] = t.state
            elif self._state[t.number] == TrialState.RUNNING and t.state != TrialState.RUNNING:
                for key, value in t.system_attrs.items():  # the constraint, a GA's generation ...
                    self.storage.set_trial_system_attr(known, key, value)
                self.storage.set_trial_state_values(known, t.state, t.values)
                self._state[t.number] = t.state

    def ask(self, explore: bool = False) -> optuna.Trial:
        """A draw by the sampler, or with `explore` a uniform one (a sampler that converged keeps proposing
        points it already has: then a random draw keeps the search going)."""
        if not explore:
            return self.study.ask()
        sampler, self.study.sampler = self.study.sampler, optuna.samplers.RandomSampler()
        try:
            return self.study.ask()
        finally:
            self.study.sampler = sampler

    def adopt(self, draft: optuna.Trial, stored_number: int) -> None:
        """The draft trial is now the mirror of stored trial `stored_number` (it stays RUNNING here until
        the stored trial finishes and the next `sync` sees it)."""
        self._mirror[stored_number] = trial_id(draft)
        self._state[stored_number] = TrialState.RUNNING

    def stand_in(self, draft: optuna.Trial, params: dict, distributions: dict) -> optuna.Trial:
        """Record `params` in place of what the sampler drew (a benchmark replay trains a table point for the
        draw): the draw is failed (no sampler reads it) and a running trial at `params`, with the draw's
        system attributes (a GA's generation), takes its place; the samplers learn from the point trained,
        at its own coordinates."""
        attrs = dict(self.storage.get_trial(trial_id(draft)).system_attrs)
        self.study.tell(draft, state=TrialState.FAIL)
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.now(), datetime_complete=None,
            params=params, distributions=distributions, user_attrs={}, system_attrs=attrs, intermediate_values={}, trial_id=0,
        )
        return optuna.Trial(self.study, self.storage.create_new_trial(self._study_id, template_trial=template))

    def over_budget(self, draft: optuna.Trial, macs: int, budget: int) -> None:
        draft.set_constraint(record.BUDGET_CONSTRAINT, macs - budget)
        self.study.tell(draft, self._told(None, {record.MACS: macs}))

    def repeat(self, draft: optuna.Trial) -> None:
        self.study.tell(draft, state=TrialState.PRUNED)

    def proxy_twin(self, draft: optuna.Trial, top1: float, measures: dict) -> None:
        """A draw whose proxy network was trained under another spec: told that training's top-1, at its own
        measures (MACs, and latency where that is an objective)."""
        draft.set_constraint(record.BUDGET_CONSTRAINT, 0.0)
        self.study.tell(draft, self._told(top1, measures))

    def _told(self, top1: float | None, measures: dict) -> list[float]:
        """A draw's objective values: what it has, and the feasible trials' median for what it has not."""
        values = [top1 if key == record.PROXY_TOP1 else measures.get(key) for key in self.objectives]
        return [self._typical(i) if v is None else v for i, v in enumerate(values)]

    def _typical(self, objective: int) -> float:
        scores = [
            t.values[objective]
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.constraints.get(record.BUDGET_CONSTRAINT, 0.0) <= 0
        ]
        return statistics.median(scores) if scores else 0.0


def _copy(t: FrozenTrial) -> FrozenTrial:
    """The part of a stored trial the samplers read: state, values, parameters, constraints, GA attributes."""
    return FrozenTrial(
        number=t.number,
        state=t.state,
        value=None,
        values=t.values,
        datetime_start=t.datetime_start,
        datetime_complete=t.datetime_complete,
        params=t.params,
        distributions=t.distributions,
        user_attrs={},
        system_attrs=dict(t.system_attrs),
        intermediate_values=dict(t.intermediate_values),
        trial_id=0,
    )
