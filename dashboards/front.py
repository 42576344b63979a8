"""The Pareto front of a study as a pandas table (proxy top-1 up, full-size MACs down), and which seed
networks it beats, said only where a test of the difference, allowing for how the winner was chosen and for
every preset compared, says so (`best_of_test`, `holm`; `nas confirm` decides "confirmed" the same way).

Reads studies through trials' record; never imports nas.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import optuna
import pandas as pd

from trials import record

from . import pareto
from .calibration import single_score_noise

FRONT_COLUMNS = ["number", record.SPEC_ID, record.PRESET, record.MACS, record.PARAMS, record.PROXY_TOP1, record.PROXY_TOP1_SE]
LATENCY_COLUMNS = [record.LATENCY_MS, record.LATENCY_SOURCE]  # where the study has latency (`has_latency`)
# "beats" is a one-sided test at this level for the whole report: the chance that noise alone makes the
# report say "beats" of at least one preset stays below it (tests/test_results.py measures it on pure noise)
ALPHA = 0.05
_NORMAL = NormalDist()


def has_latency(study: optuna.Study) -> bool:
    """Whether the study's trials carry a latency (an objective or a constraint of its goals)."""
    return record.STUDY_LATENCY in study.user_attrs


def _row(t: optuna.trial.FrozenTrial, noise: float | None) -> dict:
    se = t.user_attrs.get(record.PROXY_TOP1_SE, noise)
    return {
        record.LATENCY_MS: t.user_attrs.get(record.LATENCY_MS),
        record.LATENCY_SOURCE: t.user_attrs.get(record.LATENCY_SOURCE),
        "number": t.number,
        record.SPEC_ID: t.user_attrs.get(record.SPEC_ID),
        record.PRESET: t.user_attrs.get(record.PRESET),
        record.MACS: int(t.values[1]),
        record.PARAMS: t.user_attrs.get(record.PARAMS),
        record.PROXY_TOP1: float(t.values[0]),
        record.PROXY_TOP1_SE: se,
    }


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """`study.best_trials`, the feasible COMPLETE trials no other one dominates (dashboards.pareto), without the
    deep copy of every trial that study.best_trials makes first (10 s at 10,000 trials)."""
    return pareto.front_trials(study.get_trials(deepcopy=False), study.directions)


def pareto_frame(study: optuna.Study, calibration: dict | None = None) -> pd.DataFrame:
    """The feasible, fully trained trials no other such trial beats on every objective of the study, by MACs,
    each with the standard error of its top-1: over its seeds (--proxy-seeds), else one seed's noise as the
    recipe's calibration measured it, else None; with its latency and where it came from, where the study has
    latency. Repeats stored by versions before 0.2 are skipped."""
    noise = single_score_noise(calibration)
    rows = [_row(t, noise) for t in front_trials(study) if record.DUPLICATE_OF not in t.user_attrs]
    frame = pd.DataFrame(rows, columns=FRONT_COLUMNS + (LATENCY_COLUMNS if has_latency(study) else []))
    return frame.sort_values([record.MACS, record.PROXY_TOP1], ascending=[True, False]).reset_index(drop=True)


def latency_device(latency: dict | None) -> str:
    """Where a study's latencies come from (record.STUDY_LATENCY) in words: the device and the source."""
    if not latency:
        return ""
    device = latency.get("device") or {}
    where = device.get("gpu") or f"{device.get('cpu', '?')}, {device.get('threads', '?')} of {device.get('cores', '?')} cores"
    backend = device.get("backend", "torch")
    software = f"torch {device.get('torch', '?')}" if backend == "torch" else f"{backend} (torch {device.get('torch', '?')})"
    how = (f"predicted by {latency.get('table')} ({latency.get('predictor')}; its measured points as measured)"
           if latency.get("source") == "table" else "measured here, while no trial trained")
    return f"{where}; {software}, {device.get('dtype', 'fp32')}, batch 1; {how}"


def best_per_class(study: optuna.Study, calibration: dict | None = None) -> list[dict]:
    """Beside the front: the best measured point of each MACs class the presets define (searchspace.macs_classes:
    micro, tiny), its noise (its seeds', else the calibration's noise of one score), and that class's presets with
    their scores where the study trained them. A front of a few cheap points says little about the class a
    user asked for: at proxy scale a 0.5G network may score like a 4.5G one."""
    from searchspace import macs_classes, published

    noise = single_score_noise(calibration)
    done = [
        t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if record.DUPLICATE_OF not in t.user_attrs and pareto.feasible(t)
    ]
    trained_presets = {t.user_attrs[record.PRESET]: t for t in done if t.user_attrs.get(record.PRESET)}
    rows = []
    for c in macs_classes():
        inside = [t for t in done if c.holds(t.values[1])]
        best = max(inside, key=lambda t: (t.values[0], -t.values[1])) if inside else None
        presets = []
        for name in c.presets:
            t = trained_presets.get(name)
            presets.append({
                "preset": name, "published_macs": int(published(name)["macs_g"] * 1e9), "imagenet_top1": published(name).get("top1"),
                "trial": t.number if t else None, record.PROXY_TOP1: float(t.values[0]) if t else None,
                record.PROXY_TOP1_SE: t.user_attrs.get(record.PROXY_TOP1_SE, noise) if t else None,
            })
        rows.append({
            "class": c.label, "low_macs": int(c.low), "high_macs": int(c.high), "trained": len(inside),
            "best": _row(best, noise) if best else None, "presets": presets,
        })
    return rows


def difference_noise(se_a: float, se_b: float) -> tuple[float, str]:
    """The standard error of the difference of two independent scores, and how it was made, in words
    (two scores of noise s differ with noise s x sqrt(2))."""
    noise = math.hypot(se_a, se_b)
    if math.isclose(se_a, se_b, rel_tol=1e-6):
        return noise, f"{noise:.1f} = {se_a:.1f} x sqrt(2)"
    return noise, f"{noise:.1f} = sqrt({se_a:.1f}^2 + {se_b:.1f}^2)"


def best_of_test(gain: float, noise: float, among: int) -> tuple[float, float]:
    """One-sided p-values that a point's top-1 gain over another reflects no true gain: for this difference
    alone (normal, standard error `noise`), and for the best of `among` candidates it was chosen as (the
    winner's curse: Sidak's 1 - (1 - p)^among; the candidates' differences share the other score, which
    correlates them positively, so this bound holds). Returns (p_single, p_selection)."""
    p_single = 1.0 - _NORMAL.cdf(gain / noise)
    return p_single, 1.0 - (1.0 - p_single) ** max(1, among)


def needed_gain(noise: float, among: int, level: float) -> float:
    """The gain whose `best_of_test` selection p-value is `level`: what the difference had to exceed."""
    p_single = 1.0 - (1.0 - level) ** (1.0 / max(1, among))
    return noise * _NORMAL.inv_cdf(1.0 - p_single)


def holm(p_values: list[float]) -> tuple[list[float], list[float]]:
    """Holm's step-down adjustment of p-values tested together (any dependence between them), and the level
    each p-value was held to at its step (ALPHA / (m - rank)). By hand: a few lines, where statsmodels
    would be a dependency for one function; scipy has only false-discovery control."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, levels, running = [0.0] * m, [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i], levels[i] = running, ALPHA / (m - rank)
    return adjusted, levels


def _candidates(trials: list[optuna.trial.FrozenTrial], macs: float, exclude: int) -> int:
    """How many fully trained, feasible trials have no more MACs than `macs` (but trial `exclude`): the front's
    best point at no more MACs is the best of them all, not only of the front's points."""
    return sum(
        1 for t in trials
        if t.number != exclude and record.DUPLICATE_OF not in t.user_attrs and t.values[1] <= macs
        and all(c <= 0 for c in t.constraints.values())
    )


def dominance_report(study: optuna.Study, calibration: dict | None = None) -> list[dict]:
    """The fully trained presets off the front, each with the front point that scores best against it at no
    more MACs, and the verdict: "beats" when a one-sided test of the top-1 gain, as the best of every fully
    trained trial at no more MACs (`best_of_test`) and with Holm's correction over every preset compared, is
    significant at ALPHA; "within noise of" when it is not; "noise not measured" without a calibration or
    seeds. `noise_margin` is the gain that was needed (at the preset's Holm step)."""
    noise = single_score_noise(calibration)
    front = pareto_frame(study, calibration)
    on_front = set(front["number"])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    compared = []  # (preset, its trial, best front point, gain, GMACs change, noise of the difference, in words, chosen among)
    rows = []
    for t in complete:
        name = t.user_attrs.get(record.PRESET)
        if not name or record.DUPLICATE_OF in t.user_attrs or t.number in on_front:
            continue
        preset = _row(t, noise)
        cheaper = front[front[record.MACS] <= preset[record.MACS]]
        if cheaper.empty:
            continue
        best = cheaper.sort_values([record.PROXY_TOP1, record.MACS], ascending=[False, True]).iloc[0]
        gain, change = best[record.PROXY_TOP1] - preset[record.PROXY_TOP1], (best[record.MACS] - preset[record.MACS]) / 1e9
        ses = (best[record.PROXY_TOP1_SE], preset[record.PROXY_TOP1_SE])
        measured = all(se is not None and not pd.isna(se) for se in ses)
        if measured:  # every preset with a measured difference is one of Holm's tests, shown or not
            compared.append((name, t.number, best, gain, change, *difference_noise(*ses), _candidates(complete, preset[record.MACS], t.number)))
        elif gain >= 0:
            number = int(best["number"])
            text = f"trial {number} scores {gain:+.1f} top-1 over {name} at {change:+.2f} GMACs (noise not measured: nas calibrate)"
            rows.append(
                {"preset": name, "preset_trial": t.number, "front_trial": number, "verdict": "noise not measured",
                 "top1_gain": round(gain, 2), "noise_margin": None, "gmacs_change": round(change, 3), "text": text}
            )
    tests = [best_of_test(gain, sd, among) for _, _, _, gain, _, sd, _, among in compared]
    adjusted, levels = holm([p for _, p in tests])
    for (name, number_p, best, gain, change, sd, words, among), (p_single, p_selection), p, level in zip(compared, tests, adjusted, levels):
        if gain < 0:
            continue  # no front point at no more MACs scores higher: nothing to say (still one of Holm's tests)
        number, margin = int(best["number"]), needed_gain(sd, among, level)
        stopped = ", and Holm's procedure stopped at a preset with stronger evidence" if p >= ALPHA and gain > margin else ""
        why = (f"needed {margin:+.1f}{stopped}: the difference's noise {words}, for the best of {among} trials and "
               f"{len(compared)} presets compared; {'p < 0.001' if p < 0.001 else f'p {p:.3f}'}")
        if p < ALPHA:
            verdict, text = "beats", f"trial {number} beats {name}: {gain:+.1f} top-1 at {change:+.2f} GMACs ({why})"
        else:
            verdict, text = "within noise of", f"trial {number} is within noise of {name}: {gain:+.1f} top-1 at {change:+.2f} GMACs ({why})"
        rows.append(
            {
                "preset": name, "preset_trial": number_p, "front_trial": number, "verdict": verdict,
                "top1_gain": round(gain, 2), "noise_margin": round(margin, 2), "gmacs_change": round(change, 3), "text": text,
                "noise_of_difference": round(sd, 2), "chosen_among": among, "presets_compared": len(compared),
                "p_single": p_single, "p_selection": p_selection, "p_value": p,
            }
        )
    return sorted(rows, key=lambda r: r["preset_trial"])


def confirmed_text(point: dict | None) -> str:
    """A front point's confirmation (`nas confirm`'s entry for it) in a table cell."""
    if not point:
        return "-"
    if point.get("verdict") == "noise unknown":
        return "no: noise unknown"
    if point.get("beaten_by"):
        return f"no: beaten by {', '.join(point['beaten_by'])}"
    return "yes" if point.get("confirmed") else "no"
