"""What a trial stores in the study, and under which names.

The study is the single source of truth: these user attributes are the record of every trial.
Imports optuna and searchspace only.
"""

from __future__ import annotations

import json

import optuna

from searchspace import ArchSpec

# User attributes of a trial.
SPEC = "spec"  # the architecture, canonical JSON
SPEC_ID = "spec_id"  # the network at 224 (ArchSpec.id)
PROXY_ID = "proxy_id"  # the proxy network (ArchSpec.id_at the recipe's geometry): the key of "trained once"
PARAMS = "params"  # of the full-size network at 224, 1000 classes
MACS = "macs"
PRESET = "preset"  # the seed network's name when the point is one
PROXY_TOP1 = "proxy_top1"  # held-out top-1 (%) of the proxy at its last evaluation
PROXY_LOSS = "proxy_loss"
EPOCHS = "epochs"  # epochs run by then: 1.5 for a trial stopped half-way through its second epoch
TRAIN_SECONDS = "train_seconds"
IMAGES_PER_SECOND = "images_per_second"
DEVICE = "device"
FAIL_REASON = "fail_reason"  # why a trial failed, or why a point was not trained
DUPLICATE_OF = "duplicate_of"  # a repeat answered from this trial number (stored before 0.2; views skip it)
SEARCH_PROCESS = "search_process"  # host:pid of the `nas search` that drew the point
CURVE = "curve"  # the learning curve: {key: [value at each evaluation]} for the keys below
CURVE_KEYS = ("progress", "proxy_top1", "train_seconds")  # epochs trained, held-out top-1 (%), cumulative seconds

# A FAIL trial without a reason was failed by a later search: its own search stopped (no heartbeat).
INTERRUPTED = "interrupted: its search stopped while training it (the point was re-queued)"

# The objectives, in order, and the constraint that carries the budget.
OBJECTIVES = ("proxy top-1 (%)", "MACs")
DIRECTIONS = ("maximize", "minimize")
BUDGET_CONSTRAINT = "macs_over_budget"  # MACs - budget: feasible when <= 0

# Study user attributes.
STUDY_BUDGET = "budget_macs"
STUDY_SPACE = "space"
STUDY_SPACE_HASH = "space_sha256"
STUDY_DATA = "data"
STUDY_RECIPE = "proxy_recipe"
ZERO_COST = "zero_cost"  # a benchmark table's study: "zero_cost:<spec id>" holds that point's zero-cost scores


def spec_of(trial: optuna.trial.FrozenTrial) -> ArchSpec | None:
    text = trial.user_attrs.get(SPEC)
    return ArchSpec.model_validate(json.loads(text)) if text else None
