"""optuna-dashboard for our studies, extended through its own hooks (no fork): saved Plotly figures
(the Pareto front with presets and the budget, where the study has latency the front of top-1 vs latency,
the hypervolume history), a note with the architecture in
words on each front point and seed network, and each finished trial's exported model config as an Optuna
artifact. Each start adds only what is missing, so it costs the same at 10,000 trials as at 100.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna_dashboard import get_note, run_server, save_note, save_plotly_graph_object

from trials import record
from trials.goals import Goals

from .calibration import find_calibration, summary_line
from .figures import hypervolume_figure, latency_figure, pareto_figure
from .front import dominance_report, front_trials, has_latency, latency_device
from .notes import architecture_note
from .optuna_internals import live_trial, storage_of

FIGURES = ("nas-pareto-front", "nas-hypervolume", "nas-latency-front")  # the saved figures' ids: a fixed id overwrites last time's


def publish(study: optuna.Study, export: Callable[[optuna.trial.FrozenTrial], str] | None = None, artifact_dir: Path | None = None) -> dict:
    """Save the figures, the study's note and the notes of front points and presets that have none.
    Finished trials without a config artifact (searched before artifacts existed) get the config `export`
    writes for them, on the study: Optuna attaches artifacts only to open trials.

    Notes go to the front and the presets only: optuna-dashboard keeps every note in the study's own
    attributes, which it and `find_calibration` read whole on every request; a note per trial would make
    each of those reads grow with the study."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    calibration, missing = find_calibration(study)
    if done:
        save_plotly_graph_object(study, pareto_figure(study, calibration), graph_object_id="nas-pareto-front")
        save_plotly_graph_object(study, hypervolume_figure(study), graph_object_id="nas-hypervolume")
        if has_latency(study):
            save_plotly_graph_object(study, latency_figure(study, calibration), graph_object_id="nas-latency-front")
    save_note(study, study_note(study, calibration, missing))  # rewritten each time: calibrations and confirmations come later
    notes = 0
    worth_reading = {t.number: t for t in front_trials(study)} | {t.number: t for t in done if t.user_attrs.get(record.PRESET)}
    for frozen in worth_reading.values():
        trial = live_trial(study, frozen)  # notes address live Trial objects
        if not get_note(trial):
            save_note(trial, architecture_note(frozen))
            notes += 1
    artifacts = 0
    if export is not None and artifact_dir is not None:
        # a trial's own artifact is in its system attributes, which the trial cache holds: no query per trial
        storage = storage_of(study)
        missing = [t for t in done if not get_all_artifact_meta(t, storage=storage)]
        on_study = {meta.filename for meta in get_all_artifact_meta(study)} if missing else set()
        missing = [t for t in missing if record.config_file(study.study_name, t.number) not in on_study]
        if missing:
            artifact_dir.mkdir(parents=True, exist_ok=True)
            store = FileSystemArtifactStore(str(artifact_dir))
            with tempfile.TemporaryDirectory() as scratch:
                for frozen in missing:
                    path = Path(scratch) / record.config_file(study.study_name, frozen.number)
                    path.write_text(export(frozen))
                    upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study, mimetype="application/yaml")
                    artifacts += 1
    return {"figures": (len(FIGURES) - (not has_latency(study))) if done else 0, "notes": notes, "artifacts": artifacts}


def study_note(study: optuna.Study, calibration: dict | None, missing: str | None = None) -> str:
    """The study's note: how far its front can be trusted (calibration, confirmation, the dominance report)."""
    lines = [f"## {study.study_name}", "", f"Objectives: {Goals.of_study(study).describe()}.", "", summary_line(calibration, missing), ""]
    if has_latency(study):
        lines += [f"Latency: {latency_device(study.user_attrs.get(record.STUDY_LATENCY))}.", ""]
    confirmation = study.user_attrs.get(record.STUDY_CONFIRMATION)
    if confirmation:
        confirmed = [n for n, p in confirmation["points"].items() if p["confirmed"]]
        unknown = [n for n, p in confirmation["points"].items() if p.get("verdict") == "noise unknown"]
        lines += [
            f"Front confirmed at {confirmation['recipe_text']} with {confirmation['seeds']} seeds: "
            f"{confirmation['confirmed']} of {confirmation['front']} points (trials {', '.join(confirmed) or 'none'})"
            + (f"; not confirmed, noise unknown (a seed did not score them): trials {', '.join(unknown)}" if unknown else "") + ".", "",
        ]
    lines += [f"- {d['text']}" for d in dominance_report(study, calibration)]
    return "\n".join(lines)


def serve(storage: optuna.storages.BaseStorage, host: str, port: int, artifact_dir: Path) -> None:
    """Run optuna-dashboard on the storage (blocks until interrupted). Given the storage object, not its URL,
    it reads the trials through the same cache as our commands."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run_server(storage, host=host, port=port, artifact_store=FileSystemArtifactStore(str(artifact_dir)))
