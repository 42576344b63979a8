"""A Ray Tune searcher backed by an Optuna study, correct about fidelity, budget and repeats.

Ray's stock OptunaSearch tells Optuna COMPLETE for every trial the scheduler stops, mixing 1-epoch and
fully trained networks on one Pareto front. Here only trials trained for the full proxy budget are
COMPLETE; a trial stopped early is PRUNED with its epochs and last metrics kept; a failed one is FAIL
with its reason. The sampler draws in a private copy of the study (`drafts.DraftStudy`): a point over the
MACs budget or already scored never becomes a stored trial, so the stored study holds one trial per
trained point (plus the rare draw two searches made at the same moment, stored as FAIL: see `_claim`).
Every trial keeps its learning curve: proxy top-1, training seconds and wall-clock seconds at each evaluation
(the clock a benchmark replay runs on: see `started`).
"""

from __future__ import annotations

import heapq
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import optuna
from optuna.samplers import RandomSampler
from optuna.trial import TrialState
from ray.tune.search import Searcher

from dashboards.optuna_internals import new_trial, queued_params, record_heartbeat, waiting_params
from searchspace import ArchSpec, SearchSpace, count, preset_by_id
from trials import ProxyRecipe
from trials import record
from trials.goals import Constraint, Goals

from .drafts import DraftStudy
from .latency_source import Answer
from .study import settles_its_point

_PROCESS = f"{socket.gethostname()}:{os.getpid()}"
MAX_DRAWS = 500  # draws per suggestion before giving up on finding a new point within the constraints
EXPLORE_AFTER = 20  # repeats in a row after which a suggestion draws uniformly at random
_WAIT = object()  # a point's latency is to be measured, and a trial of this search trains: Ray asks again later


@dataclass
class Tally:
    """What the search has done so far, for the progress display and the summary."""

    started: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    cut: int = 0  # cut by the time limit (stored as FAIL, their points queued again)
    refused: dict = field(default_factory=dict)  # constraint name -> draws that broke it first (never stored)
    repeats: int = 0  # draws of a point the study has trained or is training (never stored)
    twins: int = 0  # draws whose proxy network was trained under another spec (answered, never stored)
    collisions: int = 0  # draws another search made at the same moment (stored as FAIL, not trained)
    exhausted: bool = False  # MAX_DRAWS draws in a row broke a constraint or were already scored
    events: list = field(default_factory=list)  # (trial number, what happened) for the display

    @property
    def running(self) -> int:
        return self.started - self.complete - self.pruned - self.failed - self.cut

    @property
    def over_budget(self) -> int:
        """Draws over the MACs budget."""
        return self.refused.get(record.BUDGET_CONSTRAINT, 0)

    @property
    def under_min_macs(self) -> int:
        """Draws under the MACs band's lower end (--min-macs)."""
        return self.refused.get(record.MIN_MACS_CONSTRAINT, 0)

    @property
    def over_latency(self) -> int:
        """Draws over the latency limit (--max-latency)."""
        return self.refused.get(record.LATENCY_CONSTRAINT, 0)

    @property
    def not_trained(self) -> int:
        return sum(self.refused.values()) + self.repeats + self.twins


@contextmanager
def _unless_finished_elsewhere(searcher: "StudySearcher", trial_id: str, trial: optuna.Trial):
    """Another search may have failed this trial as stale (its heartbeat missed the grace period on a
    stalled machine) and re-queued its point: the study already has the last word, so the outcome
    here is dropped instead of crashing the search."""
    try:
        yield
    except optuna.exceptions.UpdateFinishedTrialError:
        searcher._stored_trial.pop(trial_id, None)
        searcher.tally.failed += 1
        searcher.tally.events.append((trial.number, "failed", "failed meanwhile by another search (no heartbeat)"))


class StudySearcher(Searcher):
    """Suggests the points of `queue` (the seeds' presets, a benchmark table's points), then architectures
    drawn by `sampler` (default: the study's); reports every outcome to the study.

    `goals` (default: top-1 and MACs within `budget`) are the study's objectives and constraints; a point that
    breaks a constraint is never trained. Where they need a latency, `latency` gives it (nas.latency_source): a
    predictor file answers at once; a source that measures here is asked only while none of this search's
    trials is in training (a timing beside a training is wrong), so a draw it must measure waits until the
    trials in training end, and then `ahead` points are drawn and measured at once, for the next trials."""

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        budget: int,
        recipe: ProxyRecipe,
        max_trials: int,
        queue: list[ArchSpec] = (),
        sampler: optuna.samplers.BaseSampler | None = None,
        before_complete=None,
        draws: bool = True,
        goals: Goals | None = None,
        latency=None,
    ):
        super().__init__(metric=None, mode=None)
        self.study, self.space, self.budget, self.recipe = study, space, budget, recipe
        self.goals = goals or Goals.of(budget)
        if self.goals.needs_latency and latency is None:
            raise ValueError("the study's goals need a latency source")
        self.latency = latency
        self.ahead = 1  # points drawn at once where latency is measured here: the trials that run at once
        self._held: tuple[optuna.Trial, ArchSpec] | None = None  # a draw whose latency waits for no trial to train
        self._ready: list[tuple[optuna.Trial, ArchSpec, dict]] = []  # draws judged (measured) ahead, to train next
        self.left_out: list[tuple[ArchSpec, str]] = []  # queued points that break a constraint, and why
        self.max_trials = max_trials
        self.draws = draws  # False: only the queue is trained (a calibration's panel)
        self.before_complete = before_complete  # e.g. attach the exported config while the trial is open
        self.tally = Tally()
        self.drafts = DraftStudy(study, sampler or study.sampler)
        # What this search is training, by Ray trial id (docs/design.md §4.1): from the claim until it is told
        self._stored_trial: dict[str, optuna.Trial] = {}  # Ray trial id -> the stored trial it trains
        self._last_result: dict[str, dict] = {}  # Ray trial id -> the last result Ray handed on
        self._curve_so_far: dict[str, list[dict]] = {}  # Ray trial id -> its evaluations so far
        # The wall clock of the curves (a replay, nas.replay, sets its simulated one)
        self.clock = time.monotonic
        self._began: float | None = None  # when the search's first trial started
        self._freed: list[float] = []  # heap: when the workers finished trials left were freed, not yet taken
        self._start: dict[str, float] = {}  # Ray trial id -> when its clock started
        self._latest: dict[str, float] = {}  # Ray trial id -> when its last evaluation arrived
        self._presets = preset_by_id()
        self._lock = threading.Lock()
        # What the stored study holds, read by `_sync` (every search's trials)
        self._ids_by_number: dict[int, tuple[str, str]] = {}  # stored trial number -> (id, proxy id), parsed once
        self._finished_numbers: set[int] = set()  # numbers of the finished stored trials read so far (they never change)
        self._trained_by_proxy_id: dict[str, optuna.trial.FrozenTrial] = {}  # proxy id -> the finished trial that trained it
        self._training_by_proxy_id: dict[str, optuna.trial.FrozenTrial] = {}  # proxy id -> the running trial that trains it
        self._sync()  # the draft study models the stored study from the first draw on
        self._enqueue(queue)

    def __getstate__(self) -> dict:
        # Tune pickles its searcher for Tuner.restore; a search resumes through the study instead, so the
        # pickled copy keeps no live state (the study, its storage and locks are not picklable).
        return {"max_trials": self.max_trials}

    def proxy_id(self, spec: ArchSpec) -> str:
        """Two specs whose proxy networks are identical share this id: one training scores both."""
        return self.recipe.proxy_id(spec)

    # --- Ray's side ------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None:
        if self.tally.started >= self.max_trials:
            return Searcher.FINISHED
        if self._held is not None and self._stored_trial:
            return None  # a draw waits for its latency until the trials in training end: no need to read the study
        while True:
            trial, spec = self._next_point()
            if trial is _WAIT:
                return None  # Ray asks again; the latency is measured once this search's trials in training end
            if trial is None:  # the queue is done, or the sampler found no new point: the summary says which
                self.tally.exhausted = self.draws
                return Searcher.FINISHED
            if spec is not None:
                break
        with self._lock:
            self._stored_trial[trial_id] = trial
            self.tally.started += 1
        self._start[trial_id] = self.clock()  # until Ray starts it (`started`)
        config = {"spec": spec.to_dict(), "trial_number": trial.number, "spec_id": spec.id}
        if record.LATENCY_MS in self.goals.objectives:  # the trainable reports it, for MO-ASHA's rungs
            config[record.LATENCY_MS] = trial.user_attrs[record.LATENCY_MS]
        return config

    def started(self, trial_id: str) -> None:
        """Ray started the trial (Tune's on_trial_start, see nas.progress): its clock starts when the worker it
        takes was freed, i.e. at the last evaluation of a trial that ended (the earliest not yet taken), or
        with the search's first trial. So its curve's wall-clock seconds count what the trial cost a worker,
        Ray's start of it included, and never the time it waited for one (Tune may suggest a trial early)."""
        now = self.clock()
        if self._began is None:
            self._began = now
        self._start[trial_id] = heapq.heappop(self._freed) if self._freed else self._began

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last_result[trial_id] = result
        self._evaluated(trial_id, result)

    def _evaluated(self, trial_id: str, result: dict) -> None:
        """Add an evaluation to the trial's curve, with the wall-clock seconds since the trial started (Ray
        hands the result that stops a trial only to on_trial_complete, and a finished trial's last result may
        come twice)."""
        curve = self._curve_so_far.setdefault(trial_id, [])
        if "progress" in result and (not curve or result["progress"] > curve[-1]["progress"]):
            now = self.clock()
            self._latest[trial_id] = now
            curve.append({**{key: result.get(key) for key in record.CURVE_KEYS}, record.WALL_SECONDS: now - self._start.get(trial_id, now)})

    def _freeing(self, trial_id: str) -> None:
        """The trial's worker is free from the trial's last evaluation on (or now, when it made none)."""
        self._start.pop(trial_id, None)
        latest = self._latest.pop(trial_id, None)
        heapq.heappush(self._freed, self.clock() if latest is None else latest)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:
            return  # the reason arrives through `fail` from the callback, just after (Tune's order)
        result = result or self._last_result.get(trial_id) or {}
        trial = self._stored_trial.get(trial_id)
        if trial is None:
            return
        if "failure" in result:
            return self.fail(trial_id, result["failure"])
        with _unless_finished_elsewhere(self, trial_id, trial):
            self._complete(trial_id, trial, result)

    def _complete(self, trial_id: str, trial: optuna.Trial, result: dict) -> None:
        epochs = int(result.get("epoch") or 0)
        self._evaluated(trial_id, result)
        self._freeing(trial_id)
        self._record_metrics(trial, result, self._curve_so_far.pop(trial_id, []))
        with self._lock:
            self._stored_trial.pop(trial_id)
            if epochs >= self.recipe.epochs:
                attrs = trial.user_attrs
                if self.before_complete is not None:
                    try:
                        self.before_complete(trial)
                    except OSError as exc:  # a full disk must not cost the trained result
                        trial.set_user_attr("artifact_error", str(exc)[:300])
                self.study.tell(trial, self.goals.values(result["proxy_top1"], attrs))
                self.tally.complete += 1
                self.tally.events.append((trial.number, "complete", result["proxy_top1"], attrs[record.MACS], attrs.get(record.LATENCY_MS)))
            else:
                run = _epochs_run(result)  # a trial the scheduler stopped: the time limit's cuts never come here
                why = "stopped early by the scheduler" if run else "stopped before its first epoch"
                trial.set_user_attr(record.FAIL_REASON, f"{why} (after {run} of {self.recipe.epochs} epochs)")
                self.study.tell(trial, state=TrialState.PRUNED)
                self.tally.pruned += 1
                self.tally.events.append((trial.number, "pruned", run))

    def fail(self, trial_id: str, reason: str, requeue: bool = False) -> None:
        """Record a trial as FAIL with its reason (the trainable's report, or Ray's error). With `requeue` (its
        Ray node or worker died: nothing about the point itself) its point is queued again, once."""
        trial = self._stored_trial.get(trial_id)
        if trial is None:
            return
        with _unless_finished_elsewhere(self, trial_id, trial), self._lock:
            self._stored_trial.pop(trial_id, None)
            self._freeing(trial_id)
            self._record_metrics(trial, self._last_result.get(trial_id, {}), self._curve_so_far.pop(trial_id, []))
            trial.set_user_attr(record.FAIL_REASON, reason[:500])
            spec, first_try = record.spec_of(trial), record.RETRY_OF not in trial.user_attrs
            self.study.tell(trial, state=TrialState.FAIL)
            self.tally.failed += 1
            if requeue and first_try and spec is not None:
                self._enqueue([spec], retry_of=trial.number)
                reason += " (its point is queued again)"
            self.tally.events.append((trial.number, "failed", reason))

    def fail_unfinished(self, reason: str) -> None:
        for trial_id in list(self._stored_trial):
            self.fail(trial_id, reason)

    def cut_unfinished(self) -> None:
        """The time limit ran out with these trials in training (Ray stops them without telling the searcher).
        A cut trial measured nothing about its point: it is stored as FAIL, marked CUT_BY_TIME_LIMIT, with the
        epochs it ran and its last scores, and its point is queued again, so the next run on the study trains
        it first (a trial the scheduler stopped is PRUNED: a decision about its point, final)."""
        for trial_id, trial in list(self._stored_trial.items()):
            with _unless_finished_elsewhere(self, trial_id, trial), self._lock:
                self._stored_trial.pop(trial_id)
                result = self._last_result.get(trial_id, {})
                self._record_metrics(trial, result, self._curve_so_far.pop(trial_id, []))
                run = _epochs_run(result)
                trial.set_user_attr(record.CUT_BY_TIME_LIMIT, True)
                trial.set_user_attr(
                    record.FAIL_REASON, f"cut by the time limit after {run:g} of {self.recipe.epochs} epochs: not a measurement of its point, which is queued again"
                )
                spec = record.spec_of(trial)
                self.study.tell(trial, state=TrialState.FAIL)
                self.tally.cut += 1
                if spec is not None:
                    self._enqueue([spec])
                self.tally.events.append((trial.number, "cut", run))

    # --- the study's side -------------------------------------------------------------------------------
    def _next_point(self) -> tuple[optuna.Trial | None, ArchSpec | None]:
        """A stored trial and the point it trains; (trial, None) when the trial was not to be trained (it
        is told FAIL with its reason); (None, None) when the queue is done or the sampler found no new
        point that meets the study's constraints; (_WAIT, None) when a point's latency is to be measured
        while a trial of this search trains.

        The stored study's queue comes first (presets, points of a stopped search); otherwise the sampler
        draws in the draft study until a new point within the constraints comes up, and the stored trial is
        made with exactly its parameters and the point's record in one write (see `_store`)."""
        self._sync()
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting:
            if not self._measure_queue(waiting):
                return _WAIT, None
            self.study.sampler = RandomSampler()  # decides nothing: a queued trial fixes its parameters
            trial = self.study.ask()
            self.beat(trial)
            if trial.params or record.SPEC in trial.user_attrs or queued_params(trial) is not None:
                spec = record.spec_of(trial) or self.space.suggest(trial)
                return trial, (spec if self._claim(trial, spec) else None)
            self._step_back(trial, "not trained: another search took the queued point meanwhile")
            return trial, None
        if not self.draws:
            return None, None
        if self._ready:
            draft, spec, measures = self._ready.pop(0)
        else:
            drawn = self._draw()
            if drawn is _WAIT:
                return _WAIT, None
            draft, spec, measures = drawn
            if draft is None:
                return None, None
            self._draw_ahead()
        trial = self._store(draft, spec, measures)
        self.drafts.adopt(draft, trial.number)
        return trial, (spec if self._claim(trial, spec, recorded=True) else None)

    def _store(self, draft: optuna.Trial, spec: ArchSpec, measures: dict) -> optuna.Trial:
        """The stored trial of a drawn point, made from a template: its parameters, its claim and record
        and the study's constraints in one transaction. Asked and then suggested parameter by parameter,
        as Optuna's samplers do, it would take a commit per parameter (90 in the unified space), most of
        a suggestion's time on SQLite."""
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=draft.params, distributions=draft.distributions,
            user_attrs=self._record(spec, measures), constraints=self.goals.constraint_values(measures),
        )
        trial = new_trial(self.study, template)
        self.beat(trial)
        return trial

    def _judge(self, spec: ArchSpec) -> tuple[dict, Constraint | None] | None:
        """The point's measures (MACs; its latency where the goals need one) and the first constraint it breaks
        (None: it meets them all). MACs are judged first: a point they refuse is not measured. None when its
        latency must be measured while a trial of this search trains (see `suggest`). A source that does not
        measure here and has no answer (a replay's table, for a draw it holds no point of: nas.replay) leaves the
        latency unknown, which breaks no constraint."""
        measures = {record.MACS: count(spec).macs}
        broken = self.goals.broken(measures)
        if self.goals.needs_latency:
            answer = self.latency.known(spec)
            if answer is None and broken is None and self.latency.measures_here:
                if self._stored_trial:
                    return None
                answer = self.latency.measure(spec)
            if answer is not None:
                measures.update({record.LATENCY_MS: answer.ms, record.LATENCY_SOURCE: answer.source, record.LATENCY_IQR_MS: answer.iqr_ms})
                broken = broken or self.goals.broken(measures)
        return measures, broken

    def _measure_queue(self, waiting: list[optuna.trial.FrozenTrial]) -> bool:
        """Measure the latency of the queued points that need one, all at once while no trial of this search
        trains (a search's own queue was measured when it was queued, before anything trained: these are a
        stopped search's points); False when one needs it and a trial trains (the queue waits)."""
        if not (self.goals.needs_latency and self.latency.measures_here):
            return True
        specs = [spec for t in waiting if (spec := self._queued_spec(t)) is not None]
        unknown = [s for s in specs if self.latency.known(s) is None and self.goals.broken({record.MACS: count(s).macs}) is None]
        if unknown and self._stored_trial:
            return False
        for spec in unknown:
            self.latency.measure(spec)
        return True

    def _queued_spec(self, t: optuna.trial.FrozenTrial) -> ArchSpec | None:
        """The point a WAITING trial will train: its spec, or the space's point at its fixed parameters."""
        spec = record.spec_of(t)
        params = waiting_params(t)
        if spec is None and params:
            spec = self.space.suggest(optuna.trial.FixedTrial(params))
        return spec

    def _draw(self):
        """Draw in the draft study until a point meets the constraints and is not yet scored (at most MAX_DRAWS
        draws; after EXPLORE_AFTER repeats in a row, uniformly at random: the sampler has converged). Returns
        (draft, spec, measures), (None, None, None) when none came up, or _WAIT with the draw held for later."""
        repeats = 0
        for _ in range(MAX_DRAWS):
            if self._held is not None:
                (draft, spec), self._held = self._held, None
            else:
                draft = self.drafts.ask(explore=repeats >= EXPLORE_AFTER)
                spec = self.space.suggest(draft)
            judged = self._judge(spec)
            if judged is None:
                self._held = (draft, spec)
                return _WAIT
            measures, broken = judged
            if broken is not None:
                self._refuse(draft, measures, broken)
                continue
            drawn = spec.id
            draft, spec = self.stand_in(draft, spec)
            if draft is None:
                return None, None, None
            if spec.id != drawn:  # a replay's table point stands in for the draw: its own measures
                measures, broken = self._judge(spec)
                if broken is not None:
                    self._refuse(draft, measures, broken)
                    continue
            proxy_id = self.proxy_id(spec)
            earlier = self._trainer(proxy_id)
            if earlier is None and proxy_id not in {self.proxy_id(s) for _, s, _ in self._ready}:
                return draft, spec, measures
            if earlier is not None and earlier.state == TrialState.COMPLETE and self._ids_by_number[earlier.number][0] != spec.id:
                self.drafts.proxy_twin(draft, earlier.values[0], self.goals, measures)  # the same proxy network: its score
                self.tally.twins += 1
            else:
                self.drafts.repeat(draft)
                self.tally.repeats += 1
            repeats += 1
        return None, None, None

    def _refuse(self, draft: optuna.Trial, measures: dict, broken: Constraint) -> None:
        """A draw that breaks a constraint: infeasible for the sampler, never stored, counted by the constraint."""
        self.drafts.infeasible(draft, self.goals, measures)
        self.tally.refused[broken.name] = self.tally.refused.get(broken.name, 0) + 1

    def _draw_ahead(self) -> None:
        """Where latency is measured here and no trial of this search trains, draw (and measure) the points of
        the trials Ray starts beside this one now, rather than wait for this one to end before each."""
        if not (self.goals.needs_latency and self.latency.measures_here) or self._stored_trial:
            return
        for _ in range(min(self.ahead, self.max_trials - self.tally.started) - 1):
            drawn = self._draw()
            if drawn is _WAIT or drawn[0] is None:
                return
            self._ready.append(drawn)

    def stand_in(self, draft: optuna.Trial, spec: ArchSpec) -> tuple[optuna.Trial | None, ArchSpec | None]:
        """The draw and the point trained for an in-budget draw: the drawn point itself. A replay over a
        benchmark table (nas.bench) trains a table point instead; (None, None) ends the search."""
        return draft, spec

    def _claim(self, trial: optuna.Trial, spec: ArchSpec, recorded: bool = False) -> bool:
        """Record the point on the stored trial (unless `recorded` when it was made), or tell the trial FAIL
        when another trial trains it.

        Two searches on one study may draw the same point at the same moment. Each writes its claim (the
        proxy id) before it looks for another: of two claims at least one sees the other, so at most one
        trains the point; when both see each other, both step back and the point waits for a later draw."""
        proxy_id = self.proxy_id(spec)
        measures = None
        if not recorded:
            trial.set_user_attr(record.PROXY_ID, proxy_id)
            trial.set_user_attr(record.SPEC_ID, spec.id)
            judged = self._judge(spec)  # a queued point: presets are checked when queued, so rarely refused
            if judged is None:  # queued by another search meanwhile, and a trial trains: it waits for a later draw
                return self._step_back(trial, "not trained: its latency is measured only while no trial trains")
            measures, broken = judged
            if broken is not None:
                return self._step_back(trial, f"not trained: {broken.text(measures[broken.measure])}")
        other = self._sync(claim=proxy_id, exclude=trial.number)
        if other is not None:
            self.tally.collisions += 1
            return self._step_back(trial, f"not trained: trial {other.number} trains the same proxy network")
        if not recorded:
            for key, value in self._record(spec, measures).items():
                if key not in (record.PROXY_ID, record.SPEC_ID):
                    trial.set_user_attr(key, value)
            stored = trial.constraints
            for name, value in self.goals.constraint_values(measures).items():
                if name not in stored:
                    trial.set_constraint(name, value)
        return True

    def _record(self, spec: ArchSpec, measures: dict) -> dict:
        """What a stored trial records of its point: the claim (proxy id, id), the spec, its cost (and latency,
        where the study has one), the preset."""
        params, macs = count(spec)
        attrs = {
            record.PROXY_ID: self.proxy_id(spec), record.SPEC_ID: spec.id, record.SEARCH_PROCESS: _PROCESS,
            record.SPEC: json.dumps(spec.to_dict(), sort_keys=True), record.PARAMS: params, record.MACS: macs,
        }
        for key in (record.LATENCY_MS, record.LATENCY_SOURCE, record.LATENCY_IQR_MS):
            if measures.get(key) is not None:
                attrs[key] = measures[key]
        if self._presets.get(spec.id):
            attrs[record.PRESET] = self._presets[spec.id]
        return attrs

    def _step_back(self, trial: optuna.Trial, reason: str) -> bool:
        trial.set_user_attr(record.FAIL_REASON, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        return False

    def _sync(self, claim: str | None = None, exclude: int | None = None) -> optuna.trial.FrozenTrial | None:
        """Read what changed in the stored study (new trials, and those not finished when last read: a finished
        trial never changes), mirror it into the draft study and index what is trained or training by proxy id.
        With `claim`, return another trial that holds that proxy id (see `_claim`)."""
        changed = [t for t in self.study.get_trials(deepcopy=False) if t.number not in self._finished_numbers]
        self.drafts.sync(changed)
        self._training_by_proxy_id.clear()
        found = None
        for t in changed:
            if t.state.is_finished():
                self._finished_numbers.add(t.number)
            attrs = t.user_attrs
            if self.latency is not None and self.latency.measures_here and attrs.get(record.LATENCY_SOURCE) == "measured":
                # measured on the study's device (checked when the study was opened): never measured again
                self.latency.remember(attrs[record.SPEC_ID], Answer(attrs[record.LATENCY_MS], "measured", attrs.get(record.LATENCY_IQR_MS)))
            ids = self._ids_of(t)
            if ids is None or t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
                continue
            if t.state == TrialState.PRUNED and not t.user_attrs.get(record.EPOCHS):
                continue  # told PRUNED without training (an over-budget draw of an older version)
            if claim is not None and ids[1] == claim and t.number != exclude and found is None:
                found = t
            index = self._training_by_proxy_id if t.state == TrialState.RUNNING else self._trained_by_proxy_id
            if ids[1] not in index or t.number < index[ids[1]].number:
                index[ids[1]] = t
        if claim is not None and found is None and claim in self._trained_by_proxy_id:
            found = self._trained_by_proxy_id[claim]  # finished before this read: never the claiming trial itself
        return found

    def _trainer(self, proxy_id: str) -> optuna.trial.FrozenTrial | None:
        """The stored trial that trained, or trains, this proxy network."""
        return self._trained_by_proxy_id.get(proxy_id) or self._training_by_proxy_id.get(proxy_id)

    def _ids_of(self, t: optuna.trial.FrozenTrial) -> tuple[str, str] | None:
        """(id, proxy id) of a stored trial, from its spec (so trials stored under an older id still match)."""
        if t.number not in self._ids_by_number:
            if t.state == TrialState.RUNNING and record.PROXY_ID in t.user_attrs and record.SPEC not in t.user_attrs:
                return t.user_attrs[record.SPEC_ID], t.user_attrs[record.PROXY_ID]  # claimed a moment ago, not yet recorded
            spec = record.spec_of(t)
            if spec is None or record.DUPLICATE_OF in t.user_attrs:
                return None
            self._ids_by_number[t.number] = (spec.id, self.proxy_id(spec))
        return self._ids_by_number[t.number]

    def _enqueue(self, queue: list[ArchSpec], retry_of: int | None = None) -> None:
        """The queued points first, through Optuna's queue, unless the study has settled them (see `settles_its_point`)
        or queued them already, or it breaks a constraint of the study (`left_out`, with why; its latency is
        measured here, before anything trains). `retry_of`: the trial whose Ray node or worker died while
        training the point, which is queued again (once: see `fail`) although that failure settles it."""
        trials = self.study.get_trials(deepcopy=False)
        queued = {t.user_attrs.get(record.SPEC_ID) for t in trials if t.state == TrialState.WAITING}
        settled = {ids[1] for t in trials if t.number != retry_of and settles_its_point(t) and (ids := self._ids_of(t))}
        for spec in queue:
            if spec.id in queued or self.proxy_id(spec) in settled:
                continue
            judged = self._judge(spec)  # None: to be measured while a trial trains; judged when claimed
            if judged is not None and judged[1] is not None:
                measures, broken = judged
                self.left_out.append((spec, broken.text(measures[broken.measure])))
                continue
            attrs = {record.SPEC_ID: spec.id}
            if spec.id in self._presets:
                attrs[record.PRESET] = self._presets[spec.id]
            if retry_of is not None:
                attrs[record.RETRY_OF] = retry_of
            if self.space.contains(spec):  # a real sample of the space: the sampler sees its parameters
                self.study.enqueue_trial(self.space.params_of(spec), user_attrs=attrs)
            else:  # no parameters to give: the trial carries its spec
                self.study.enqueue_trial({}, user_attrs={**attrs, record.SPEC: json.dumps(spec.to_dict(), sort_keys=True)})
            queued.add(spec.id)

    def beat(self, trial: optuna.Trial | None = None) -> None:
        """Record a heartbeat for one trial, or for every trial in training (see nas.search._Heartbeat):
        a killed search's trials stop beating and are failed by the live searches on the study."""
        for t in [trial] if trial is not None else list(self._stored_trial.values()):
            try:
                record_heartbeat(t)
            except Exception:  # a trial finished meanwhile, an in-memory study, a storage hiccup: next beat
                pass

    @staticmethod
    def _record_metrics(trial: optuna.Trial, result: dict, curve: list[dict]) -> None:
        for key in (record.PROXY_TOP1, record.PROXY_TOP1_SE, record.SEED_TOP1, record.PROXY_LOSS, record.TRAIN_LOSS_SUM, record.TRAIN_SECONDS, record.IMAGES_PER_SECOND, record.DEVICE, record.NODE):
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        trial.set_user_attr(record.EPOCHS, _epochs_run(result))
        if curve:  # columns, as a user attribute: Optuna's intermediate values are single-objective only
            trial.set_user_attr(record.CURVE, {key: [e[key] for e in curve] for key in record.CURVE_KEYS})


def _epochs_run(result: dict) -> float:
    """Epochs trained when the result was taken: `progress` (fractional mid-epoch), else whole `epoch`s."""
    return result.get("progress", int(result.get("epoch") or 0))
