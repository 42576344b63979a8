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
