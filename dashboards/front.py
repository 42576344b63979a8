"""The Pareto front of a study as a pandas table: proxy top-1 up, full-size MACs down.

Reads studies through trials' record; never imports nas.
"""

from __future__ import annotations

import optuna
import pandas as pd

from trials import record as R

FRONT_COLUMNS = ["number", R.SPEC_ID, R.PRESET, R.MACS, R.PARAMS, R.PROXY_TOP1]


def pareto_frame(study: optuna.Study) -> pd.DataFrame:
    """The feasible, fully trained trials no other such trial beats on both objectives, by MACs.

    A point scored twice (a duplicate answered from the study) appears once, under its first trial.
    """
    best = study.best_trials  # COMPLETE and feasible under the budget constraint
    rows = [
        {
            "number": t.number,
            R.SPEC_ID: t.user_attrs.get(R.SPEC_ID),
            R.PRESET: t.user_attrs.get(R.PRESET),
            R.MACS: int(t.values[1]),
            R.PARAMS: t.user_attrs.get(R.PARAMS),
            R.PROXY_TOP1: float(t.values[0]),
        }
        for t in best
        if R.DUPLICATE_OF not in t.user_attrs
    ]
    frame = pd.DataFrame(rows, columns=FRONT_COLUMNS)
    return frame.sort_values([R.MACS, R.PROXY_TOP1], ascending=[True, False]).reset_index(drop=True)


def dominance_report(study: optuna.Study) -> list[dict]:
    """The fully trained presets off the front, each with the front point that beats it by the most
    top-1 ("trial 17 beats dwnet_t: +1.2 top-1 at -0.4 GMACs")."""
    front = pareto_frame(study)
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        name = t.user_attrs.get(R.PRESET)
        if not name or R.DUPLICATE_OF in t.user_attrs or t.number in set(front["number"]):
            continue
        top1, macs = t.values
        beats = front[(front[R.PROXY_TOP1] >= top1) & (front[R.MACS] <= macs)]
        beats = beats[(beats[R.PROXY_TOP1] > top1) | (beats[R.MACS] < macs)]
        if beats.empty:
            continue
        best = beats.sort_values([R.PROXY_TOP1, R.MACS], ascending=[False, True]).iloc[0]
        gain, saved = best[R.PROXY_TOP1] - top1, (best[R.MACS] - macs) / 1e9
        rows.append(
            {
                "preset": name,
                "preset_trial": t.number,
                "beaten_by": int(best["number"]),
                "top1_gain": round(gain, 2),
                "gmacs_change": round(saved, 3),
                "text": f"trial {int(best['number'])} beats {name}: {gain:+.1f} top-1 at {saved:+.2f} GMACs",
            }
        )
    return rows
