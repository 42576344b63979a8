"""`nas report`: one HTML page (and optionally a PNG) that tells a study's story.

The Pareto front with the presets and the budget (where the study has latency, the front of top-1 vs latency
too, with its device), the hypervolume over trials, the front and the dominance report as tables, the best
point of each MACs class the presets define, and the best architecture per MACs bucket in words. Plotly's JS
is embedded, so the page opens offline.
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
from trials.goals import Goals

from .figures import hypervolume_figure, latency_figure, pareto_figure
from .calibration import calibration_for, find_calibration, summary_line
from .front import ALPHA, best_per_class, confirmed_text, dominance_report, has_latency, latency_device, pareto_frame

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
    latency = has_latency(study)
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
        goals=Goals.of_study(study).describe(),
        latency=latency_device(study.user_attrs.get(record.STUDY_LATENCY)) if latency else None,
        pareto_html=pareto_figure(study, calibration).to_html(full_html=False, include_plotlyjs=True),
        latency_html=latency_figure(study, calibration).to_html(full_html=False, include_plotlyjs=False) if latency else None,
        hypervolume_html=hypervolume_figure(study).to_html(full_html=False, include_plotlyjs=False),
        front=[
            {
                "trial": int(r["number"]), "id": r[record.SPEC_ID], "preset": r[record.PRESET] if isinstance(r[record.PRESET], str) else "",
                "macs": format_macs(r[record.MACS]), "params": format_params(r[record.PARAMS]), "top1": f"{r[record.PROXY_TOP1]:.1f}",
                "ms": _ms(r) if latency else None,
                "se": "" if pd.isna(r[record.PROXY_TOP1_SE]) else f"{r[record.PROXY_TOP1_SE]:.1f}",
                "confirmed": confirmed_text(confirmation.get("points", {}).get(str(int(r["number"])))),
            }
            for _, r in front.iterrows()
        ],
        dominance=dominance_report(study, calibration),
        alpha=ALPHA,
        buckets=best_per_bucket(study),
        classes=[_class_row(c) for c in best_per_class(study, calibration)],
    )


def _ms(row) -> str:
    ms, source = row.get(record.LATENCY_MS), row.get(record.LATENCY_SOURCE)
    if ms is None or pd.isna(ms):
        return ""
    return f"{ms:.1f}" + ("" if source == "measured" else f" ({source})")


def _class_row(c: dict) -> dict:
    """A MACs class of best_per_class for the page."""
    b = c["best"]
    score = lambda top1, se: f"{top1:.1f}" + ("" if se is None or pd.isna(se) else f" ± {se:.1f}")  # noqa: E731
    return {
        "label": c["class"], "covers": f"{format_macs(c['low_macs'])} - {format_macs(c['high_macs'])}", "trained": c["trained"],
        "best": b and {"trial": b["number"], "macs": format_macs(b[record.MACS]), "ms": _ms(b), "top1": score(b[record.PROXY_TOP1], b[record.PROXY_TOP1_SE])},
        "presets": [f"{p['preset']} {score(p[record.PROXY_TOP1], p[record.PROXY_TOP1_SE])}" for p in c["presets"] if p["trial"] is not None],
        "untrained": [p["preset"] for p in c["presets"] if p["trial"] is None],
    }


def render_png(study: optuna.Study, path: Path, size: tuple[int, int] = PNG_SIZE) -> None:
    """The front (and, where the study has latency, the front of top-1 vs latency) and the hypervolume side by
    side as a PNG (Plotly through kaleido and a Chromium)."""
    calibration = calibration_for(study)
    panels = [pareto_figure(study, calibration)] + ([latency_figure(study, calibration)] if has_latency(study) else [])
    panels.append(hypervolume_figure(study))
    widths = [0.6, 0.4] if len(panels) == 2 else [0.37, 0.37, 0.26]
    size = size if len(panels) == 2 else (int(size[0] * 1.5), size[1])
    # each panel's title without the study's name (the picture's own title), its parenthesis on a line of its own
    titles = [p.layout.title.text.split(": ", 1)[-1].replace(" (", "<br>(", 1) for p in panels]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, column_widths=widths)
    for col, panel in enumerate(panels, 1):
        for trace in panel.data:
            fig.add_trace(trace, row=1, col=col)
        for shape in panel.layout.shapes:  # the budget (latency limit) line and its label
            fig.add_shape(shape, row=1, col=col)
        for note in panel.layout.annotations:
            fig.add_annotation(note, row=1, col=col)
        fig.update_xaxes(title_text=panel.layout.xaxis.title.text or "trial", row=1, col=col)
        fig.update_yaxes(title_text=panel.layout.yaxis.title.text, row=1, col=col)
    fig.update_layout(title=study.study_name, template="plotly_white", width=size[0], height=size[1], showlegend=True, margin={"t": 120})
    try:
        fig.write_image(str(path), width=size[0], height=size[1])
    except Exception as exc:  # kaleido without a browser, or one that failed to start
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise NasError(
            f"cannot render {path}: {first}; the PNG needs a Chromium for kaleido "
            "(sudo apt-get install chromium, or set BROWSER_PATH)"
        ) from None
