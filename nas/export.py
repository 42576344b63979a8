"""`nas export`: a searched architecture as a model config that builds here and through timm.

The config carries the spec, its cost, the search metrics and provenance (study, storage without
password, trial, space file and hash, package version, date). `searchspace.build_model(path)` and
`timm.create_model('nas_unified', config=path)` build the same network from it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from dashboards import pareto_frame
from searchspace import CONVENTION, NasError, format_macs
from trials import record
from trials.goals import Goals

from . import __version__
from .study import masked


def pick_trial(study: optuna.Study, number: int | None, best: bool, budget: int | None) -> optuna.trial.FrozenTrial:
    """The trial to export: by number, or the best proxy top-1 on the front within the budget."""
    if best:
        budget = budget or study.user_attrs.get(record.STUDY_BUDGET)
        front = pareto_frame(study)
        if budget:
            front = front[front[record.MACS] <= budget]
        if front.empty:
            within = f" within {format_macs(budget)} MACs" if budget else ""
            raise NasError(f"study {study.study_name!r} has no finished trial on its front{within}")
        number = int(front.sort_values([record.PROXY_TOP1, record.MACS], ascending=[False, True]).iloc[0]["number"])
    trials = study.get_trials(deepcopy=False)
    if number is None or not 0 <= number < len(trials):
        raise NasError(f"study {study.study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        why = trial.user_attrs.get(record.FAIL_REASON)
        raise NasError(
            f"trial {number} of {study.study_name!r} is {trial.state.name}{f' ({why})' if why else ''}: "
            "only a finished (COMPLETE) trial can be exported"
        )
    return trial


def model_config(study: optuna.Study, trial: optuna.trial.FrozenTrial, storage_url: str) -> dict:
    spec = record.spec_of(trial)
    attrs = trial.user_attrs
    name = attrs.get(record.PRESET) or f"{study.study_name}-trial{trial.number}"
    spec_data = {"name": name, **{k: v for k, v in spec.to_dict().items() if k != "name"}}
    cost = {"params": attrs[record.PARAMS], "macs": attrs[record.MACS], "convention": CONVENTION}
    latency = study.user_attrs.get(record.STUDY_LATENCY)
    if latency and attrs.get(record.LATENCY_MS) is not None:  # the latency and the device it holds for
        cost["latency"] = {
            "ms": attrs[record.LATENCY_MS], "source": attrs.get(record.LATENCY_SOURCE), "iqr_ms": attrs.get(record.LATENCY_IQR_MS),
            "batch": 1, "device": latency.get("device"), "protocol": latency.get("protocol"),
            **({"table": latency["table"], "predictor": latency.get("predictor")} if latency.get("source") == "table" else {}),
        }
    return {
        "spec": spec_data,
        "cost": cost,
        "search": {
            "proxy_top1": attrs.get(record.PROXY_TOP1),
            "proxy_loss": attrs.get(record.PROXY_LOSS),
            "epochs": attrs.get(record.EPOCHS),
            "preset": attrs.get(record.PRESET),
            "proxy_recipe": study.user_attrs.get(record.STUDY_RECIPE),
            "data": study.user_attrs.get(record.STUDY_DATA),
            "budget_macs": study.user_attrs.get(record.STUDY_BUDGET),
            "goals": Goals.of_study(study).to_dict(),
        },
        "provenance": {
            "study": study.study_name,
            "storage": masked(storage_url),
            "trial": trial.number,
            "spec_id": spec.id,
            "space": study.user_attrs.get(record.STUDY_SPACE),
            "space_sha256": study.user_attrs.get(record.STUDY_SPACE_HASH),
            "package": "nas-unified",
            "version": __version__,
            "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def attach_config(study: optuna.Study, trial, storage_url: str, artifact_dir: Path) -> None:
    """Store the trial's exported config as its Optuna artifact (shown by `nas dashboard`). Artifacts
    attach only to open trials, so this runs when training ends, just before the trial is told."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifact_dir.mkdir(parents=True, exist_ok=True)
    path = artifact_dir / record.config_file(study.study_name, trial.number)
    path.write_text(dump(model_config(study, trial, storage_url), "yaml"))
    upload_artifact(
        artifact_store=FileSystemArtifactStore(str(artifact_dir)), file_path=str(path), study_or_trial=trial,
        mimetype="application/yaml",
    )
    path.unlink()  # the store keeps its own copy


def dump(config: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(config, indent=2) + "\n"
    return yaml.safe_dump(config, sort_keys=False, width=100)


def write(text: str, output: str | None) -> None:
    if output is None:
        print(text, end="")
        return
    path = Path(output)
    try:
        path.write_text(text)
    except OSError as exc:
        raise NasError(f"cannot write {output}: {exc.strerror or exc}") from None
