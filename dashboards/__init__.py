"""Looking at results: the front and dominance tables, figures, the HTML/PNG report, the
optuna-dashboard launcher with its extra figures and notes (DESIGN §5).

Reads studies through trials' record; imports trials and searchspace, never nas.
"""

from .front import dominance_report, front_trials, pareto_frame

__all__ = ["dominance_report", "front_trials", "pareto_frame"]
