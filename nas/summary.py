"""What a user sees after a search: counts, the Pareto front as a table, where the study lives."""

from __future__ import annotations

from dashboards.front import pareto_frame
from searchspace import format_macs, format_params
from trials import record as R

from .console import emit_json, out, table
from .study import load_study, masked


def print_search_summary(summary: dict, storage_url: str, as_json: bool) -> None:
    study = load_study(storage_url, summary["study"])
    front = pareto_frame(study)
    t = summary["tally"]
    counts = {
        "complete": t.complete, "pruned": t.pruned, "failed": t.failed,
        "draws_over_budget": t.over_budget, "draws_repeated": t.repeats, "draws_proxy_twins": t.twins,
        "draws_collided": t.collisions,
    }
    if as_json:
        return emit_json(
            {
                "study": summary["study"], "storage": masked(storage_url), "seconds": round(summary["seconds"], 1),
                "this_run": counts, "trials_in_study": len(study.trials),
                "front": front.to_dict(orient="records"),
            }
        )
    out.print(
        f"\n{t.complete} complete, {t.pruned} pruned, {t.failed} failed this run"
        + (f"; {not_trained(t)}" if t.not_trained else "")
        + f"; {len(study.trials)} trials in the study; {summary['seconds'] / 60:.1f} min"
    )
    if t.exhausted:
        out.print("the sampler drew no new in-budget point in 500 draws: the space looks exhausted for this budget")
    print_front(front)
    url = masked(storage_url)
    out.print(f"\nstudy {summary['study']!r} lives in {url}")
    out.print(f"browse it:  nas dashboard --storage {url}   (or: optuna-dashboard {url})")


def print_front(front) -> None:
    out.print(f"\nPareto front, {len(front)} point{'s' * (len(front) != 1)}: proxy top-1 vs MACs of the full-size network at 224")
    table(
        None,
        ["trial", "id", "preset", "MACs", "params", "proxy top-1"],
        [
            (r["number"], r[R.SPEC_ID], r[R.PRESET] if isinstance(r[R.PRESET], str) else "", format_macs(r[R.MACS]), format_params(r[R.PARAMS]), f"{r[R.PROXY_TOP1]:.1f}%")
            for _, r in front.iterrows()
        ],
        right=["trial", "MACs", "params", "proxy top-1"],
    )


def not_trained(tally) -> str:
    """The draws the sampler made that were not trained, in words."""
    parts = [f"{tally.over_budget} over budget", f"{tally.repeats} repeats"]
    if tally.twins:
        parts.append(f"{tally.twins} proxy twins")
    return ", ".join(parts) + " drawn, not trained"
