"""The Pareto front of a study as a pandas table (proxy top-1 up, full-size MACs down), and which seed
networks it beats, said only where the margin is larger than the measured noise.

Reads studies through trials' record; never imports nas.
"""

from __future__ import annotations

import math

import optuna
import pandas as pd

from trials import record as R

from . import pareto
from .calibration import single_score_noise

FRONT_COLUMNS = ["number", R.SPEC_ID, R.PRESET, R.MACS, R.PARAMS, R.PROXY_TOP1, R.PROXY_TOP1_SE]
NOISE_MARGIN = 2.0  # "beats" needs a top-1 gain larger than this many standard errors of the difference


def _row(t: optuna.trial.FrozenTrial, noise: float | None) -> dict:
    se = t.user_attrs.get(R.PROXY_TOP1_SE, noise)
    return {
        "number": t.number,
        R.SPEC_ID: t.user_attrs.get(R.SPEC_ID),
        R.PRESET: t.user_attrs.get(R.PRESET),
        R.MACS: int(t.values[1]),
        R.PARAMS: t.user_attrs.get(R.PARAMS),
        R.PROXY_TOP1: float(t.values[0]),
        R.PROXY_TOP1_SE: se,
    }


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """`study.best_trials`, the feasible COMPLETE trials no other one dominates (dashboards.pareto), without the
    deep copy of every trial that study.best_trials makes first (10 s at 10,000 trials)."""
    return pareto.front_trials(study.get_trials(deepcopy=False), study.directions)


def pareto_frame(study: optuna.Study, calibration: dict | None = None) -> pd.DataFrame:
    """The feasible, fully trained trials no other such trial beats on both objectives, by MACs, each with
    the standard error of its top-1: over its seeds (--proxy-seeds), else one seed's noise as the recipe's
    calibration measured it, else None. Repeats stored by versions before 0.2 are skipped."""
    noise = single_score_noise(calibration)
    rows = [_row(t, noise) for t in front_trials(study) if R.DUPLICATE_OF not in t.user_attrs]
    frame = pd.DataFrame(rows, columns=FRONT_COLUMNS)
    return frame.sort_values([R.MACS, R.PROXY_TOP1], ascending=[True, False]).reset_index(drop=True)


def dominance_report(study: optuna.Study, calibration: dict | None = None) -> list[dict]:
    """The fully trained presets off the front, each with the front point that scores best against it at no
    more MACs, and the verdict: "beats" when the top-1 gain is larger than NOISE_MARGIN standard errors of the
    difference, "within noise of" when it is not, "noise not measured" without a calibration or seeds."""
    noise = single_score_noise(calibration)
    front = pareto_frame(study, calibration)
    on_front = set(front["number"])
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        name = t.user_attrs.get(R.PRESET)
        if not name or R.DUPLICATE_OF in t.user_attrs or t.number in on_front:
            continue
        preset = _row(t, noise)
        better = front[(front[R.PROXY_TOP1] >= preset[R.PROXY_TOP1]) & (front[R.MACS] <= preset[R.MACS])]
        if better.empty:
            continue
        best = better.sort_values([R.PROXY_TOP1, R.MACS], ascending=[False, True]).iloc[0]
        gain, change = best[R.PROXY_TOP1] - preset[R.PROXY_TOP1], (best[R.MACS] - preset[R.MACS]) / 1e9
        ses = (best[R.PROXY_TOP1_SE], preset[R.PROXY_TOP1_SE])
        measured = all(se is not None and not pd.isna(se) for se in ses)
        margin = NOISE_MARGIN * math.hypot(*ses) if measured else None
        number = int(best["number"])
        if margin is None:
            verdict = "noise not measured"
            text = f"trial {number} scores {gain:+.1f} top-1 over {name} at {change:+.2f} GMACs (noise not measured: nas calibrate)"
        elif gain > margin:
            verdict = "beats"
            text = f"trial {number} beats {name}: {gain:+.1f} top-1 (> {margin:.1f}, twice the noise) at {change:+.2f} GMACs"
        else:
            verdict = "within noise of"
            text = f"trial {number} is within noise of {name}: {gain:+.1f} top-1 (noise margin {margin:.1f}) at {change:+.2f} GMACs"
        rows.append(
            {
                "preset": name, "preset_trial": t.number, "front_trial": number, "verdict": verdict,
                "top1_gain": round(gain, 2), "noise_margin": None if margin is None else round(margin, 2),
                "gmacs_change": round(change, 3), "text": text,
            }
        )
    return rows

