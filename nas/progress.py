"""Live progress of a search: trials finished / running / failed / pruned, elapsed time, the front so far.

A Ray Tune callback (Ray calls it in the driver); it also tells the searcher when Ray starts a trial (the
start of its curve's wall clock) and hands it Ray's trial errors.
"""

from __future__ import annotations


from ray.tune import Callback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dashboards import front_trials
from searchspace import format_macs

from .summary import not_trained


class SearchProgress(Callback):
    def __init__(self, searcher, study, total: int, console, started: float):
        self.searcher, self.study, self.started = searcher, study, started
        self._shown = 0
        self.bar = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("", total=total)

    def __getstate__(self) -> dict:
        return {}  # Tune pickles its callbacks for Tuner.restore; the display is not worth keeping

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self._refresh()
        self.bar.stop()

    # --- Tune's hooks ----------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.searcher.started(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = trial.get_error()
        lines = [line for line in str(error or "").splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else "the trial's Ray worker failed"
        # the trainable reports every training failure itself: an error here is Ray's (a node or worker died)
        self.searcher.fail(trial.trial_id, f"Ray: {reason[:400]}", requeue=True)
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._refresh()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._refresh()

    def on_step_end(self, iteration, trials, **info):
        if iteration % 20 == 0:
            self._refresh()

    def _refresh(self):
        t = self.searcher.tally
        for event in t.events[self._shown :]:
            self.bar.console.print(self._describe(event), markup=False)
        self._shown = len(t.events)
        done = t.complete + t.pruned + t.failed + t.cut
        extra = f" | {not_trained(t)}" if t.not_trained else ""
        self.bar.update(
            self.task,
            completed=done,
            description=f"{t.complete} complete, {t.running} running, {t.pruned} pruned, {t.failed} failed{extra}",
        )

    def _describe(self, event) -> str:
        number, what, *rest = event
        if what == "complete":
            top1, macs, latency = rest
            front = len(front_trials(self.study))
            ms = f", {latency:.1f} ms" if latency is not None else ""
            return f"trial {number}: {top1:.1f}% top-1 at {format_macs(macs)} MACs{ms} (front: {front} point{'s' * (front != 1)})"
        if what == "pruned":
            return f"trial {number}: stopped early after {rest[0]:g} epoch(s)"
        if what == "cut":
            return f"trial {number}: cut by the time limit after {rest[0]:g} epoch(s); its point is queued for the next run"
        return f"trial {number}: failed: {rest[0]}"

