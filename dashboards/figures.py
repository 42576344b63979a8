"""The plots of a study, as Plotly figures: one place for the dashboard's saved figures and the report.

Pareto front of proxy top-1 vs MACs (every trained trial faded behind it, presets marked and named,
the budget and a band's lower end as lines), where the study has latency the front of proxy top-1 vs
latency (its own two-objective front, the latency limit as a line, the device in the title), and the
hypervolume over trials (dashboards.pareto's, in every objective of the study, with its reference point).
"""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from trials import record
from trials.goals import Goals

from .calibration import single_score_noise
from .front import latency_device, pareto_frame
from .pareto import REFERENCE, Box, as_losses, feasible, front_trials, hypervolume_history, nondominated

GREY, ACCENT, PRESET = "rgba(120,120,120,0.35)", "#1f77b4", "#d62728"


def pareto_figure(study: optuna.Study, calibration: dict | None = None) -> go.Figure:
    """Error bars on the front: its points' standard errors (seeds, or the calibration's noise of one score)."""
    budget = study.user_attrs.get(record.STUDY_BUDGET)
    front = pareto_frame(study, calibration)
    noise = front[record.PROXY_TOP1_SE].astype(float)
    done = [
        t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if record.DUPLICATE_OF not in t.user_attrs
    ]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[t.values[1] / 1e9 for t in done],
            y=[t.values[0] for t in done],
            mode="markers",
            name="trials",
            marker={"color": GREY, "size": 8},
            text=[f"trial {t.number} ({t.user_attrs.get(record.SPEC_ID)})" for t in done],
            hoverinfo="text+x+y",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=front[record.MACS] / 1e9,
            y=front[record.PROXY_TOP1],
            mode="lines+markers",
            line={"shape": "hv", "color": ACCENT},
            marker={"size": 10, "color": ACCENT},
            name="Pareto front" + (" (± 1 standard error)" if noise.notna().any() else ""),
            text=[f"trial {n}" for n in front["number"]],
            error_y={"type": "data", "array": noise.fillna(0).tolist(), "visible": bool(noise.notna().any())},
        )
    )
    presets = [t for t in done if t.user_attrs.get(record.PRESET)]
    if presets:
        fig.add_trace(
            go.Scatter(
                x=[t.values[1] / 1e9 for t in presets],
                y=[t.values[0] for t in presets],
                mode="markers+text",
                marker={"symbol": "star", "size": 14, "color": PRESET},
                text=[t.user_attrs[record.PRESET] for t in presets],
                textposition="top center",
                name="seed presets",
            )
        )
    if budget:
        fig.add_vline(x=budget / 1e9, line_dash="dash", line_color="black", annotation_text=f"budget {budget / 1e9:g}G")
    low = Goals.of_study(study).min_macs
    if low:
        fig.add_vline(x=low / 1e9, line_dash="dot", line_color="black", annotation_text=f"band from {low / 1e9:g}G")
    fig.update_layout(
        title=f"{study.study_name}: proxy top-1 vs MACs" + (" (front in MACs and latency)" if record.LATENCY_MS in Goals.of_study(study).objectives else ""),
        xaxis_title="GMACs of the full-size network (224x224, 1000 classes)",
        yaxis_title="proxy top-1 (%)",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def latency_figure(study: optuna.Study, calibration: dict | None = None) -> go.Figure:
    """Proxy top-1 vs latency (ms, batch 1, on the study's latency device): every trained trial faded, the
    front of these two objectives (with the noise of its points), the presets, the latency limit. Only for a
    study with latency (dashboards.front.has_latency)."""
    noise = single_score_noise(calibration)
    done = [
        t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if record.DUPLICATE_OF not in t.user_attrs and feasible(t) and t.user_attrs.get(record.LATENCY_MS) is not None
    ]
    pairs = [(t.values[0], t.user_attrs[record.LATENCY_MS]) for t in done]
    on_front = nondominated(as_losses(pairs, ("maximize", "minimize")))
    front = sorted((t for t, keep in zip(done, on_front) if keep), key=lambda t: t.user_attrs[record.LATENCY_MS])
    se = [t.user_attrs.get(record.PROXY_TOP1_SE, noise) for t in front]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[ms for _, ms in pairs], y=[top1 for top1, _ in pairs], mode="markers", name="trials", marker={"color": GREY, "size": 8},
        text=[f"trial {t.number} ({t.user_attrs.get(record.SPEC_ID)}, {t.values[1] / 1e9:.2f} GMACs)" for t in done], hoverinfo="text+x+y",
    ))
    fig.add_trace(go.Scatter(
        x=[t.user_attrs[record.LATENCY_MS] for t in front], y=[t.values[0] for t in front], mode="lines+markers",
        line={"shape": "hv", "color": ACCENT}, marker={"size": 10, "color": ACCENT}, text=[f"trial {t.number}" for t in front],
        name="front of top-1 vs latency" + (" (± 1 standard error)" if any(x is not None for x in se) else ""),
        error_y={"type": "data", "array": [x or 0 for x in se], "visible": any(x is not None for x in se)},
    ))
    presets = [t for t in done if t.user_attrs.get(record.PRESET)]
    if presets:
        fig.add_trace(go.Scatter(
            x=[t.user_attrs[record.LATENCY_MS] for t in presets], y=[t.values[0] for t in presets], mode="markers+text",
            marker={"symbol": "star", "size": 14, "color": PRESET}, text=[t.user_attrs[record.PRESET] for t in presets],
            textposition="top center", name="seed presets",
        ))
    limit = Goals.of_study(study).max_latency_ms
    if limit:
        fig.add_vline(x=limit, line_dash="dash", line_color="black", annotation_text=f"limit {limit:g} ms")
    fig.update_layout(
        title=f"{study.study_name}: proxy top-1 vs latency",
        xaxis_title=f"latency (ms, batch 1): {latency_device(study.user_attrs.get(record.STUDY_LATENCY))}",
        yaxis_title="proxy top-1 (%)", template="plotly_white", legend={"orientation": "h", "y": -0.2},
    )
    return fig


def hypervolume_figure(study: optuna.Study) -> go.Figure:
    """The hypervolume of the front after each fully trained trial, in the study front's box (dashboards.pareto:
    the one hypervolume `nas bench run` reports too), with its reference point in the study's objectives."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if feasible(t)]
    front = front_trials(done, study.directions)
    fig = go.Figure()
    reference = "no fully trained trial yet"
    if front:
        box = Box.of([t.values for t in front], study.directions)
        history = hypervolume_history([t.values for t in done], box)
        fig.add_trace(go.Scatter(x=[t.number for t in done], y=history, mode="lines+markers", line={"shape": "hv"}, name="hypervolume"))
        at = ", ".join(f"{name} {value:.4g}" for name, value in zip(Goals.of_study(study).labels, box.reference_point()))
        reference = f"normalised to the front's box; reference point {REFERENCE:g} in each = {at}"
    fig.update_layout(
        title=f"{study.study_name}: hypervolume over trials ({reference})", xaxis_title="trial", yaxis_title="hypervolume",
        template="plotly_white",
    )
    return fig
