"""optuna-dashboard for our studies, extended through its own hooks (no fork): saved Plotly figures
(the Pareto front with presets and the budget, the hypervolume history), a note per trial with its
architecture in words, and each finished trial's exported model config as an Optuna artifact.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna_dashboard import get_note, run_server, save_note, save_plotly_graph_object

from trials import record as R

from .calibration import calibration_for, summary_line
from .figures import hypervolume_figure, pareto_figure
from .front import dominance_report
from .notes import architecture_note

FIGURES = ("nas-pareto-front", "nas-hypervolume")  # the saved figures' ids: a fixed id overwrites last time's


def publish(study: optuna.Study, configs: dict[int, Path] | None = None, artifact_dir: Path | None = None) -> dict:
    """Save the figures and the notes of trials that have none. Finished trials without a config
    artifact (searched before artifacts existed) get theirs on the study: Optuna attaches artifacts
    only to open trials."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    calibration = calibration_for(study)
    if done:
        save_plotly_graph_object(study, pareto_figure(study, calibration), graph_object_id="nas-pareto-front")
        save_plotly_graph_object(study, hypervolume_figure(study), graph_object_id="nas-hypervolume")
    save_note(study, study_note(study, calibration))  # rewritten each time: calibrations and confirmations come later
    notes = 0
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)):
        trial = optuna.trial.Trial(study, frozen._trial_id)  # notes address live Trial objects
        if not get_note(trial):
            save_note(trial, architecture_note(frozen))
            notes += 1
    artifacts = 0
    if configs and artifact_dir is not None:
        artifact_dir.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(str(artifact_dir))
        on_study = {meta.filename for meta in get_all_artifact_meta(study)}
        for frozen in done:
            path = configs.get(frozen.number)
            if path and path.name not in on_study and not get_all_artifact_meta(frozen, storage=study._storage):
                upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study, mimetype="application/yaml")
                artifacts += 1
    return {"figures": len(FIGURES) if done else 0, "notes": notes, "artifacts": artifacts}


def study_note(study: optuna.Study, calibration: dict | None) -> str:
    """The study's note: how far its front can be trusted (calibration, confirmation, the dominance report)."""
    lines = [f"## {study.study_name}", "", summary_line(calibration), ""]
    confirmation = study.user_attrs.get(R.STUDY_CONFIRMATION)
    if confirmation:
        confirmed = [n for n, p in confirmation["points"].items() if p["confirmed"]]
        lines += [
            f"Front confirmed at {confirmation['recipe_text']} with {confirmation['seeds']} seeds: "
            f"{confirmation['confirmed']} of {confirmation['front']} points (trials {', '.join(confirmed) or 'none'}).", "",
        ]
    lines += [f"- {d['text']}" for d in dominance_report(study, calibration)]
    return "\n".join(lines)


def serve(storage_url: str, host: str, port: int, artifact_dir: Path) -> None:
    """Run optuna-dashboard on the storage (blocks until interrupted)."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run_server(storage_url, host=host, port=port, artifact_store=FileSystemArtifactStore(str(artifact_dir)))
