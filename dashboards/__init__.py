"""Looking at results: the front and dominance tables, figures, the HTML/PNG report, the
optuna-dashboard launcher with its extra figures and notes (DESIGN §5).

Reads studies through trials' record; imports trials and searchspace, never nas.
"""

import importlib

# The front needs pandas and loads on first use: opening a storage (dashboards.optuna_internals) never loads it.
_LAZY = dict.fromkeys(["dominance_report", "front_trials", "pareto_frame"], "front")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["dominance_report", "front_trials", "pareto_frame"]
