"""Every use of Ray's private API, in one place: what Ray offers no public way to do.
tests/test_library_internals.py fails loudly when one of these changes. Imports Ray only.
"""

from __future__ import annotations

from ray.tune.experiment import Trial


def stand_in_trial(trial_id: str | None = None, config: dict | None = None) -> Trial:
    """A Ray Tune trial that never runs, for a scheduler fed by hand (a replay on a simulated clock, a test):
    Tune's own tests make such trials with the undocumented `stub=True`, which skips the trainable's lookup."""
    kwargs = {"trial_id": trial_id} if trial_id is not None else {}
    return Trial("__stand_in", config=config or {}, stub=True, **kwargs)
