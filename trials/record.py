"""What a trial stores in the study, and under which names.

The study is the single source of truth: these user attributes are the record of every trial.
Imports optuna, searchspace and the proxy recipe only.
"""

from __future__ import annotations

import json

import optuna

from searchspace import ArchSpec
from searchspace.presets import load_axes
from searchspace.geometry import digest

from .recipe import EARLIER, ProxyRecipe

# User attributes of a trial.
SPEC = "spec"  # the architecture, canonical JSON
SPEC_ID = "spec_id"  # the network at 224 (ArchSpec.id)
PROXY_ID = "proxy_id"  # the proxy network (ArchSpec.id_at the recipe's geometry): the key of "trained once"
PARAMS = "params"  # of the full-size network at 224, 1000 classes
MACS = "macs"
# Latency of the full-size network at batch 1 (ms) on the study's latency device (STUDY_LATENCY), when the study
# has one; where it came from (measured here, or a predictor file's measured / lut / lut+model / model) and,
# when it was measured, the interquartile range of its timed runs.
LATENCY_MS = "latency_ms"
LATENCY_SOURCE = "latency_source"
LATENCY_IQR_MS = "latency_iqr_ms"
PRESET = "preset"  # the seed network's name when the point is one
PROXY_TOP1 = "proxy_top1"  # held-out top-1 (%) of the proxy at its last evaluation (the seeds' mean)
PROXY_TOP1_SE = "proxy_top1_se"  # its standard error over the recipe's seeds (2 or more)
SEED_TOP1 = "seed_top1"  # each seed's top-1
PROXY_LOSS = "proxy_loss"
TRAIN_LOSS_SUM = "train_loss_sum"  # the sum of the epochs' mean training losses (SoTL)
EPOCHS = "epochs"  # epochs run by then: 1.5 for a trial stopped half-way through its second epoch
TRAIN_SECONDS = "train_seconds"
IMAGES_PER_SECOND = "images_per_second"
DEVICE = "device"
NODE = "node"  # the Ray node that trained it (its node id, as `ray list nodes` shows it)
FAIL_REASON = "fail_reason"  # why a trial failed, or why a point was not trained
DUPLICATE_OF = "duplicate_of"  # a repeat answered from this trial number (stored before 0.2; views skip it)
SEARCH_PROCESS = "search_process"  # host:pid of the `nas search` that drew the point
RETRY_OF = "retry_of"  # the trial whose Ray node or worker died while training this point (it is retried once)
CUT_BY_TIME_LIMIT = "cut_by_time_limit"  # True on a FAIL trial --time-limit stopped: no measurement, its point queued again
CURVE = "curve"  # the learning curve: {key: [value at each evaluation]} for the keys below
# Wall-clock seconds at the search's driver from the trial's start to the evaluation's arrival there: Ray's start
# of the trial, its training, evaluations and reports, as the search saw them. A trial starts when the worker
# it takes is freed (the last evaluation of the trial before it there), or with the search's first trial.
WALL_SECONDS = "wall_seconds"
# epochs trained, held-out top-1 (%), cumulative training seconds, wall-clock seconds (older curves: the first three)
CURVE_KEYS = ("progress", "proxy_top1", "train_seconds", WALL_SECONDS)

# A FAIL trial without a reason was failed by a later search: its own search stopped (no heartbeat).
INTERRUPTED = "interrupted: its search stopped while training it (the point was re-queued)"

# The default objectives, in order (a study's own are its goals: trials.goals, STUDY_GOALS), and the names of
# the constraints (Optuna's, set with Trial.set_constraint: feasible when <= 0; each the violation relative to
# its bound, trials.goals.Constraint.value; studies of older versions stored MACs - budget).
OBJECTIVES = ("proxy top-1 (%)", "MACs")
DIRECTIONS = ("maximize", "minimize")
BUDGET_CONSTRAINT = "macs_over_budget"  # (MACs - budget) / budget
MIN_MACS_CONSTRAINT = "macs_under_min"  # (lower bound - MACs) / lower bound: --min-macs, or a band's lower end
LATENCY_CONSTRAINT = "latency_over_max"  # (latency - limit) / limit: --max-latency

# Study user attributes.
STUDY_BUDGET = "budget_macs"  # the upper MACs bound
STUDY_GOALS = "goals"  # the objectives and constraints (trials.goals.Goals.to_dict)
STUDY_LATENCY = "latency"  # where its latencies come from: source (table, measured), the table file, device, protocol
STUDY_SPACE = "space"
STUDY_SPACE_HASH = "space_sha256"
STUDY_DATA = "data"
STUDY_RECIPE = "proxy_recipe"
STUDY_RECIPE_KEY = "recipe_key"  # digest of the recipe's fidelity (ProxyRecipe.key) and the data: what a calibration holds for
STUDY_ROLE = "role"  # "search", or a calibration's "proxy" / "reference" run, or "confirm"
STUDY_CALIBRATION = "calibration"  # on a calibration's runs: the figures (see dashboards.calibration)
STUDY_CONFIRMATION = "confirmation"  # on a search: its front re-trained at a higher fidelity (nas confirm)
STUDY_CONFIRMS = "confirms"  # on a confirmation's runs: the search they confirm
ZERO_COST = "zero_cost"  # a benchmark table's study: "zero_cost:<spec id>" holds that point's zero-cost scores


def config_file(study_name: str, number: int) -> str:
    """The file name of a trial's exported config (`nas export`), as stored with the trial or its study."""
    return f"{study_name}-trial{number}.yaml"


def spec_of(trial: optuna.trial.FrozenTrial) -> ArchSpec | None:
    text = trial.user_attrs.get(SPEC)
    if not text:
        return None
    load_axes()
    return ArchSpec.model_validate(json.loads(text))


def recipe_key(recipe: ProxyRecipe, data: str) -> str:
    """One fidelity: the recipe but its seeds, on one data set. A calibration holds for the studies that share it."""
    return digest({**recipe.key, "data": data})


def stored_recipe(study: optuna.Study) -> ProxyRecipe | None:
    """The recipe a study was run with; fields added since default to what older versions did."""
    stored = study.user_attrs.get(STUDY_RECIPE)
    if not stored:
        return None
    known = ProxyRecipe.__dataclass_fields__
    # a study made before the window rules existed clamped its windows; one made before the test split was held
    # out did what recipe.EARLIER says
    before = {"windows": "clamp", **EARLIER, "rung_val_size": stored.get("val_size", ProxyRecipe.val_size)}
    return ProxyRecipe(**{**before, **{k: v for k, v in stored.items() if k in known}})
