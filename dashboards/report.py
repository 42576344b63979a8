"""`nas report`: one HTML page (and optionally a PNG) that tells a study's story.

The Pareto front with the presets and the budget, the hypervolume over trials, the front and the
dominance report as tables, and the best architecture per MACs bucket in words. Plotly's JS is
embedded, so the page opens offline.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import optuna
import pandas as pd
from plotly.subplots import make_subplots

from searchspace import NasError, format_macs, format_params
from trials import record

from .figures import hypervolume_figure, pareto_figure
from .calibration import calibration_for, find_calibration, summary_line
from .front import ALPHA, confirmed_text, dominance_report, pareto_frame

TEMPLATES = Path(__file__).parent / "templates"
PNG_SIZE = (1600, 700)


def best_per_bucket(study: optuna.Study) -> list[dict]:
    """The best proxy top-1 in each MACs bucket (budget/8, /4, /2, the budget) with its spec in words."""
    budget = study.user_attrs.get(record.STUDY_BUDGET)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if record.DUPLICATE_OF not in t.user_attrs]
    if not done:
        return []
    top = budget or max(t.values[1] for t in done)
    edges = [0.0, top / 8, top / 4, top / 2, top]
    rows = []
    for low, high in zip(edges, edges[1:]):
        inside = [t for t in done if low < t.values[1] <= high]
        if not inside:
            continue
        best = max(inside, key=lambda t: (t.values[0], -t.values[1]))
        spec = record.spec_of(best)
        rows.append(
            {
                "bucket": f"{format_macs(low)} - {format_macs(high)}",
                "trial": best.number,
                "preset": best.user_attrs.get(record.PRESET) or "",
                "id": spec.id,
                "macs": format_macs(best.values[1]),
                "params": format_params(best.user_attrs[record.PARAMS]),
                "top1": f"{best.values[0]:.1f}",
                "stages": spec.summary(),
            }
        )
    return rows


def counts(study: optuna.Study) -> dict:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def render_html(study: optuna.Study, storage_label: str) -> str:
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise NasError(f"study {study.study_name!r} has no finished trial yet: nothing to report")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    calibration, missing = find_calibration(study)
    confirmation = study.user_attrs.get(record.STUDY_CONFIRMATION) or {}
    front = pareto_frame(study, calibration)
    budget = study.user_attrs.get(record.STUDY_BUDGET)
    return env.get_template("report.html.j2").render(
        study=study.study_name,
        storage=storage_label,
        budget=format_macs(budget) if budget else "none recorded",
        data=study.user_attrs.get(record.STUDY_DATA, "?"),
        recipe=study.user_attrs.get(record.STUDY_RECIPE, {}),
        counts=counts(study),
        created=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        calibration=summary_line(calibration, missing),
        confirmation=confirmation,
        pareto_html=pareto_figure(study, calibration).to_html(full_html=False, include_plotlyjs=True),
        hypervolume_html=hypervolume_figure(study).to_html(full_html=False, include_plotlyjs=False),
        front=[
            {
                "trial": int(r["number"]), "id": r[record.SPEC_ID], "preset": r[record.PRESET] if isinstance(r[record.PRESET], str) else "",
                "macs": format_macs(r[record.MACS]), "params": format_params(r[record.PARAMS]), "top1": f"{r[record.PROXY_TOP1]:.1f}",
                "se": "" if pd.isna(r[record.PROXY_TOP1_SE]) else f"{r[record.PROXY_TOP1_SE]:.1f}",
                "confirmed": confirmed_text(confirmation.get("points", {}).get(str(int(r["number"])))),
            }
            for _, r in front.iterrows()
        ],
        dominance=dominance_report(study, calibration),
        alpha=ALPHA,
        buckets=best_per_bucket(study),
    )


def render_png(study: optuna.Study, path: Path, size: tuple[int, int] = PNG_SIZE) -> None:
    """The front and the hypervolume side by side as a PNG (Plotly through kaleido and a Chromium)."""
    front, hv = pareto_figure(study, calibration_for(study)), hypervolume_figure(study)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(front.layout.title.text, hv.layout.title.text), column_widths=[0.6, 0.4])
    for trace in front.data:
        fig.add_trace(trace, row=1, col=1)
    for trace in hv.data:
        fig.add_trace(trace, row=1, col=2)
    for shape in front.layout.shapes:  # the budget line and its label
        fig.add_shape(shape, row=1, col=1)
    for note in front.layout.annotations:
        fig.add_annotation(note, row=1, col=1)
    fig.update_xaxes(title_text=front.layout.xaxis.title.text, row=1, col=1)
    fig.update_yaxes(title_text=front.layout.yaxis.title.text, row=1, col=1)
    fig.update_xaxes(title_text="trial", row=1, col=2)
    fig.update_yaxes(title_text="hypervolume", row=1, col=2)
    fig.update_layout(template="plotly_white", width=size[0], height=size[1], showlegend=True)
    try:
        fig.write_image(str(path), width=size[0], height=size[1])
    except Exception as exc:  # kaleido without a browser, or one that failed to start
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise NasError(
            f"cannot render {path}: {first}; the PNG needs a Chromium for kaleido "
            "(sudo apt-get install chromium, or set BROWSER_PATH)"
        ) from None
