"""What a user sees of a study: counts, the Pareto front with its noise and confirmation, the dominance report,
a calibration's figures, where the study lives."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboards.calibration import find_calibration, summary_line
from dashboards.front import ALPHA, best_per_class, confirmed_text, dominance_report, latency_device, pareto_frame
from searchspace import format_macs, format_params
from trials import record
from trials.goals import Goals

from .console import emit_json, out, table
from .study import load_study, masked


def print_search_summary(summary: dict, storage_url: str, as_json: bool) -> None:
    study = load_study(storage_url, summary["study"])
    results = Results.of(study)
    in_study = len(study.get_trials(deepcopy=False))
    t = summary["tally"]
    counts = {
        "complete": t.complete, "pruned": t.pruned, "failed": t.failed, "cut_by_time_limit": t.cut,
        "draws_over_budget": t.over_budget, "draws_under_min_macs": t.under_min_macs, "draws_over_latency": t.over_latency,
        "draws_repeated": t.repeats, "draws_proxy_twins": t.twins, "draws_collided": t.collisions,
    }
    latency = summary.get("latency")
    if latency is not None and latency.measures_here:
        counts["latencies_measured"] = latency.measured
        counts["latency_seconds"] = round(latency.seconds, 1)
    if as_json:
        return emit_json(
            {
                "study": summary["study"], "storage": masked(storage_url), "seconds": round(summary["seconds"], 1),
                "this_run": counts, "trials_in_study": in_study, **results.as_json(),
            }
        )
    out.print(
        f"\n{t.complete} complete, {t.pruned} pruned, {t.failed} failed"
        + (f", {t.cut} cut by the time limit (queued for the next run)" if t.cut else "")
        + " this run"
        + (f"; {not_trained(t)}" if t.not_trained else "")
        + f"; {in_study} trials in the study; {summary['seconds'] / 60:.1f} min"
    )
    if latency is not None and latency.measures_here and latency.measured:
        out.print(f"{latency.measured} latencies measured here in {latency.seconds:.0f}s, while no trial trained", markup=False)
    if t.exhausted:
        out.print("the sampler drew no new point within the constraints in 500 draws: the space looks exhausted for them")
    results.print()
    url = masked(storage_url)
    out.print(f"\nstudy {summary['study']!r} lives in {url}")
    out.print(f"browse it:  nas dashboard --storage {url}   (or: optuna-dashboard {url})")


@dataclass
class Results:
    """What a study says, with how far to trust it: the front, its noise, the confirmation, the dominance report."""

    front: pd.DataFrame
    calibration: dict | None
    confirmation: dict | None
    dominance: list[dict]
    uncalibrated: str | None = None  # what the study is not calibrated for, without a calibration
    goals: Goals = Goals()
    latency: dict | None = None  # where the study's latencies come from (record.STUDY_LATENCY)
    classes: list[dict] = ()  # the best point of each MACs class the presets define (best_per_class)

    @classmethod
    def of(cls, study) -> "Results":
        calibration, missing = find_calibration(study)
        front = pareto_frame(study, calibration)
        confirmation = study.user_attrs.get(record.STUDY_CONFIRMATION)
        if confirmation:
            front["confirmed"] = [confirmation["points"].get(str(n), {}).get("confirmed") for n in front["number"]]
        return cls(
            front, calibration, confirmation, dominance_report(study, calibration), missing, Goals.of_study(study),
            study.user_attrs.get(record.STUDY_LATENCY), best_per_class(study, calibration),
        )

    def as_json(self) -> dict:
        return {
            "objectives": list(self.goals.objectives), "constraints": [c.to_dict() for c in self.goals.constraints],
            "latency": self.latency, "front": self.front.to_dict(orient="records"), "classes": self.classes,
            "dominated_presets": self.dominance, "calibration": self.calibration, "confirmation": self.confirmation,
        }

    def print(self) -> None:
        front = self.front
        latency = self.latency is not None
        against = "MACs and latency" if record.LATENCY_MS in self.goals.objectives else "MACs"
        out.print(f"\nPareto front, {len(front)} point{'s' * (len(front) != 1)}: proxy top-1 vs {against} of the full-size network at 224")
        out.print(f"objectives: {self.goals.describe()}", markup=False)
        columns = ["trial", "id", "preset", "MACs"] + (["ms"] if latency else []) + ["params", "proxy top-1"] + (["confirmed"] if self.confirmation else [])
        table(
            None,
            columns,
            [
                (r["number"], r[record.SPEC_ID], r[record.PRESET] if isinstance(r[record.PRESET], str) else "", format_macs(r[record.MACS]))
                + ((_ms(r[record.LATENCY_MS], r[record.LATENCY_SOURCE]),) if latency else ())
                + (format_params(r[record.PARAMS]), _score(r[record.PROXY_TOP1], r[record.PROXY_TOP1_SE]))
                + ((confirmed_text(self.confirmation["points"].get(str(r["number"]))),) if self.confirmation else ())
                for _, r in front.iterrows()
            ],
            right=["trial", "MACs", "ms", "params", "proxy top-1"],
        )
        if latency:
            out.print(f"latency: {latency_device(self.latency)}", markup=False)
        out.print(summary_line(self.calibration, self.uncalibrated), markup=False)
        self._print_classes()
        if self.confirmation:
            c = self.confirmation
            unknown = f"; {c['noise_unknown']} noise unknown (a seed did not score them)" if c.get("noise_unknown") else ""
            out.print(f"confirmed at {c['recipe_text']} with {c['seeds']} seeds: {c['confirmed']} of {c['front']} front points{unknown}", markup=False)
        if self.dominance:
            out.print(
                f"\nthe front against the seed networks (\"beats\": a one-sided test at {ALPHA:g} of the gain of the best trial at "
                "no more MACs, chosen among all of them, corrected for every preset compared):"
            )
            for d in self.dominance:
                out.print(f"  {d['text']}", markup=False)


    def _print_classes(self) -> None:
        """The best measured point of each MACs class the presets define, with the class's presets and the noise."""
        if not self.classes:
            return
        latency = self.latency is not None
        out.print("\nthe best measured point of each MACs class the seed presets define, beside the class's presets")
        rows = []
        for c in self.classes:
            b = c["best"]
            trained = [f"{p['preset']} {_score(p[record.PROXY_TOP1], p[record.PROXY_TOP1_SE])}" for p in c["presets"] if p["trial"] is not None]
            untrained = [p["preset"] for p in c["presets"] if p["trial"] is None]
            presets = ", ".join(trained + ([f"not trained here: {', '.join(untrained)}"] if untrained else []))
            rows.append(
                (c["class"], f"{format_macs(c['low_macs'])}-{format_macs(c['high_macs'])}", c["trained"])
                + ((b["number"], format_macs(b[record.MACS])) if b else ("-", "-"))
                + ((_ms(b[record.LATENCY_MS], b[record.LATENCY_SOURCE]) if b else "-",) if latency else ())
                + (_score(b[record.PROXY_TOP1], b[record.PROXY_TOP1_SE]) if b else "no trained point", presets)
            )
        columns = ["class", "covers", "trained", "best trial", "MACs"] + (["ms"] if latency else []) + ["proxy top-1", "presets"]
        table(None, columns, rows, right=["trained", "best trial", "MACs", "ms", "proxy top-1"])


def _ms(ms, source) -> str:
    if ms is None or pd.isna(ms):
        return "-"
    return f"{ms:.1f}" + ("" if source == "measured" else f" ({source})")


def _score(top1: float, se) -> str:
    return f"{top1:.1f}%" if se is None or pd.isna(se) else f"{top1:.1f} ± {se:.1f}%"


def not_trained(tally) -> str:
    """The draws the sampler made that were not trained, in words; those that broke a constraint also per
    trained trial (how fast the sampler learns the constraint: benchmarks/budget.py)."""
    trained = max(1, tally.complete + tally.pruned)
    parts = [f"{tally.over_budget} over budget"]
    for n, what in ((tally.under_min_macs, "under the MACs band"), (tally.over_latency, "over the latency limit")):
        if n:
            parts.append(f"{n} {what}")
    refused = sum(tally.refused.values())
    parts[-1] += f" ({refused / trained:.1f} per trained trial)" if refused else ""
    parts.append(f"{tally.repeats} repeats")
    if tally.twins:
        parts.append(f"{tally.twins} proxy twins")
    return ", ".join(parts) + " drawn, not trained"


def _agreement(a: dict | None) -> str:
    if not a:
        return "-"
    ci = a.get("tau_ci")
    return f"tau {a['tau']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "") + f", Spearman {a['spearman']:+.2f} (n={a['n']})"


def print_calibration(c: dict) -> None:
    """A calibration's figures as a table for people (dashboards.calibration.figures)."""
    rows = []
    if "seed_to_seed" in c:
        s = c["seed_to_seed"]
        ci = s.get("tau_ci")
        rows.append(("seed to seed", f"tau {s['tau']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "") + f", Spearman {s['spearman']:+.2f} ({s['seeds']} seeds)"))
    if "noise" in c:
        n = c["noise"]
        rows.append(("noise of one score", f"std {n['pooled_std']:.2f} top-1; seeds differ by {n['mean_abs_difference']:.2f} on average, "
                     f"{n['largest_difference']:.2f} at most ({n['worst_point']})"))
    ref = c.get("against_reference", {})
    for key, label in (("proxy_top1", "proxy top-1 vs reference"), ("proxy_sotl", "proxy SoTL vs reference"), ("macs_only", "MACs alone vs reference")):
        if key in ref:
            rows.append((label, _agreement(ref[key])))
    paper = c.get("against_published", {})
    if paper:
        a = paper["all"]
        rows.append(("vs papers' top-1", f"proxy tau {a['proxy']:+.2f}" + (f", reference {a['reference']:+.2f}" if "reference" in a else "")
                     + f", MACs alone {a['macs_only']:+.2f} ({len(a['presets'])} presets)"))
        for g in paper.get("similar_macs", []):
            rows.append(("  similar MACs", f"proxy tau {g['proxy']:+.2f}" + (f", reference {g['reference']:+.2f}" if "reference" in g else "")
                         + f", MACs alone {g['macs_only']:+.2f} ({', '.join(g['presets'])})"))
    for role, cost in c.get("cost", {}).items():
        rows.append((f"cost, {role}", f"{cost['seconds_per_trial']:.1f} s per trial ({cost['trials']} trials)"))
    proxy_only = [r for r in c.get("collapsed", []) if not r["also_at_full_size"]]
    rows.append(("choices the proxy cannot see", f"{len(proxy_only)} (and {len(c.get('collapsed', [])) - len(proxy_only)} that 224 px cannot see either)"))
    out.print(f"calibration of the proxy recipe on {c['points']} points ({c.get('data', '?')}); Kendall tau with 95% intervals")
    table(None, ["figure", "value"], rows)
    for r in proxy_only:
        out.print(f"  stage {r['stage']} {r['section']} {r['dimension']} {r['value']}: {r['what']}", markup=False)
