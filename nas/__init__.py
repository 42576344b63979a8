"""The user's commands and the orchestration: budget, study, Ray/Optuna glue, search, export, timm entrypoint.

The top layer (DESIGN §5): may import dashboards, trials and searchspace; the only place that knows Ray.
"""

__version__ = "0.1.0"

from . import timm_model  # noqa: E402,F401  (registers 'nas_unified' with timm)
