"""The user's commands and the orchestration: budget, study, Ray/Optuna glue, search, export, timm entrypoint.

The top layer (DESIGN §5): may import dashboards, trials and searchspace; the only place that knows Ray.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"
DEFAULT_STORAGE = "sqlite:///nas_studies.db"  # here, not in nas.study: the CLI shows it without loading Optuna


def _register_with_timm() -> None:
    from . import timm_model  # noqa: F401  (registers 'nas_unified' with timm)


class _AfterTimmLoads(importlib.abc.MetaPathFinder):
    """Registers 'nas_unified' the moment timm finishes loading: importing nas registers it, as ever, and
    the commands that never build a network (nas pareto, nas studies ...) never load timm or torch."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _register_with_timm()

        spec.loader.exec_module = exec_module
        return spec


if "timm" in sys.modules:
    _register_with_timm()
else:
    sys.meta_path.insert(0, _AfterTimmLoads())
