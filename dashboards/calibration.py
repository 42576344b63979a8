"""How far a proxy score can be trusted: rank agreement between seeds, with a stronger reference recipe and
with the papers, and the noise of one score (DESIGN §3, "proxy fidelity is measured, not assumed").

Pure statistics over the trials of a calibration's runs (one study per recipe and seed), and the lookup of
the calibration that holds for a study. Reads studies through trials' record; never imports nas.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from searchspace import published
from trials import record

from .optuna_internals import storage_of

BOOTSTRAP = 2000  # resamples of the panel for each interval
SIMILAR_MACS = 1.5  # presets within this factor of each other's MACs are compared among themselves


RUN_COLUMNS = ["role", "recipe", "recipe_text", "seed", "point", "preset", "macs", "top1", "sotl", "seconds"]


def runs_frame(studies: list[optuna.Study]) -> pd.DataFrame:
    """One row per fully trained point of each run: role, recipe (key and words), seed, point id, preset,
    MACs, scores, seconds."""
    rows = []
    for study in studies:
        recipe = record.stored_recipe(study)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            a = t.user_attrs
            rows.append(
                {
                    "role": study.user_attrs.get(record.STUDY_ROLE), "recipe": study.user_attrs.get(record.STUDY_RECIPE_KEY),
                    "recipe_text": recipe.describe(short=True), "seed": recipe.seed, "point": a[record.SPEC_ID],
                    "preset": a.get(record.PRESET), "macs": a[record.MACS], "top1": t.values[0],
                    "sotl": a.get(record.TRAIN_LOSS_SUM), "seconds": a.get(record.TRAIN_SECONDS),
                }
            )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def calibration_runs(storage) -> list[optuna.Study]:
    """Every calibration run (proxy and reference) in a storage."""
    return [
        optuna.load_study(study_name=s.study_name, storage=storage)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.user_attrs.get(record.STUDY_ROLE) in ("proxy", "reference")
    ]


def recipes_compared(frame: pd.DataFrame) -> list[dict]:
    """The figures of every proxy recipe in `frame` against the same reference runs, cheapest first."""
    reference = frame[frame.role == "reference"]
    rows = []
    for key, runs in frame[frame.role == "proxy"].groupby("recipe"):
        shared = runs[runs.point.isin(reference.point)]
        f = figures(pd.concat([shared, reference[reference.point.isin(shared.point)]]))
        rows.append({"recipe": key, "recipe_text": runs.recipe_text.iloc[0], "figures": f})
    return sorted(rows, key=lambda r: r["figures"]["cost"]["proxy"]["seconds_per_trial"])


def _tau(x, y) -> float:
    from scipy import stats  # here, not at the top: the commands that show a calibration never compute one

    with warnings.catch_warnings():  # constant scores: undefined, NaN, and said so by the callers
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.kendalltau(x, y).statistic)


def _rho(x, y) -> float:
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def agreement(x, y, seed: int = 0) -> dict:
    """Kendall tau and Spearman rho of two scorings of the same points, each with a 95% percentile interval
    from resampling the points. By hand, not scipy.stats.bootstrap: a resample of a small panel can hold
    ties only, where a rank correlation is undefined; those resamples are left out instead of failing."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = {"n": len(x), "tau": _tau(x, y), "spearman": _rho(x, y)}
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(BOOTSTRAP if len(x) > 2 else 0):
        i = rng.integers(0, len(x), len(x))
        tau, rho = _tau(x[i], y[i]), _rho(x[i], y[i])
        if not (math.isnan(tau) or math.isnan(rho)):
            taus.append(tau)
            rhos.append(rho)
    for name, values in (("tau", taus), ("spearman", rhos)):
        out[f"{name}_ci"] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else None
    return out


def similar_macs_groups(macs: dict[str, float]) -> list[list[str]]:
    """Presets split where the next one needs more than SIMILAR_MACS times the MACs (groups of 3 or more)."""
    ordered = sorted(macs, key=macs.get)
    groups, current = [], ordered[:1]
    for name in ordered[1:]:
        if macs[name] > SIMILAR_MACS * macs[current[0]]:
            groups.append(current)
            current = []
        current.append(name)
    groups.append(current)
    return [g for g in groups if len(g) >= 3]


def figures(frame: pd.DataFrame, collapsed: list[dict] | None = None) -> dict:
    """Every figure of a calibration from `runs_frame` of its proxy and reference runs."""
    proxy = frame[frame.role == "proxy"].pivot_table(index="point", columns="seed", values="top1")
    reference = frame[frame.role == "reference"].groupby("point").top1.mean()
    points = frame.drop_duplicates("point").set_index("point")
    out: dict = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "points": len(points)}

    # seed to seed: every pair of seeds on the points both trained
    pairs = [agreement(*proxy[[a, b]].dropna().T.values) for a, b in itertools.combinations(proxy.columns, 2)]
    if pairs:
        out["seed_to_seed"] = {
            "seeds": len(proxy.columns), "pairs": len(pairs),
            **{k: float(np.mean([p[k] for p in pairs])) for k in ("tau", "spearman")},
            "tau_ci": pairs[0]["tau_ci"] if len(pairs) == 1 else None,
        }
        spread = proxy.dropna().std(axis=1, ddof=1)
        out["noise"] = {
            "pooled_std": float(np.sqrt((spread**2).mean())),  # one score's standard deviation between seeds
            "mean_abs_difference": float((proxy.dropna().max(axis=1) - proxy.dropna().min(axis=1)).mean()),
            "largest_difference": float((proxy.dropna().max(axis=1) - proxy.dropna().min(axis=1)).max()),
            "worst_point": str((proxy.dropna().max(axis=1) - proxy.dropna().min(axis=1)).idxmax()),
        }
    mean_proxy = proxy.mean(axis=1)
    both = pd.concat([mean_proxy.rename("proxy"), reference.rename("reference"), points.macs], axis=1).dropna()
    if len(both) > 2:
        sotl = -frame[frame.role == "proxy"].groupby("point").sotl.mean().reindex(both.index)
        out["against_reference"] = {
            "proxy_top1": agreement(both.proxy, both.reference),
            "proxy_sotl": agreement(sotl, both.reference) if sotl.notna().all() else None,
            "macs_only": agreement(both.macs, both.reference),
        }
    out["against_published"] = published_agreement(points, mean_proxy, reference)
    out["cost"] = {
        role: {"trials": int(len(rows)), "seconds_per_trial": float(rows.seconds.mean())}
        for role, rows in frame.groupby("role")
    }
    out["collapsed"] = collapsed or []
    return out


def published_agreement(points: pd.DataFrame, proxy: pd.Series, reference: pd.Series) -> dict:
    """Tau against the presets' published ImageNet top-1: all presets in the panel, and within groups of
    similar MACs, for the proxy, the reference and MACs alone."""
    presets = points[points.preset.notna()]
    top1 = {p: published(name).get("top1") for p, name in presets.preset.items()}
    ids = [p for p, value in top1.items() if value is not None and p in proxy.index]
    if len(ids) < 3:
        return {}

    def scores(subset):
        paper = [top1[p] for p in subset]
        row = {"presets": [presets.preset[p] for p in subset], "proxy": _tau(proxy[subset], paper), "macs_only": _tau(presets.macs[subset], paper)}
        if all(p in reference.index for p in subset):
            row["reference"] = _tau(reference[subset], paper)
        return row

    groups = similar_macs_groups({p: float(presets.macs[p]) for p in ids})
    return {"all": scores(ids), "similar_macs": [scores(g) for g in groups]}


# Calibrations measured for the project on the embedded data and shipped with it (README, "Proxy fidelity"):
# the default recipe's, and two others'. Each holds its recipe key ("recipe_key") and "shipped": true.
SHIPPED = Path(__file__).with_name("calibrations")
# A calibration holds for the budgets within this factor of the one it was measured at (its "budget class"):
# a search's points are of the size of its budget, and so were the calibration's panel.
BUDGET_CLASS = 2.0


def shipped_calibrations() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(SHIPPED.glob("*.json"))]


def measured_budget(calibration: dict) -> int | None:
    """The budget a calibration was measured at: as recorded, else (older calibrations, the shipped ones)
    its panel's largest MACs, the panel having been drawn within it."""
    panel = [p["macs"] for p in calibration.get("panel", []) if p.get("macs")]
    return calibration.get("budget") or (max(panel) if panel else None)


def holds_on_space(calibration: dict, study: optuna.Study) -> bool:
    """Measured on the study's space: the same space file by content where both record it, else (the shipped
    calibrations, measured from another checkout) the same space name."""
    mine, theirs = study.user_attrs.get(record.STUDY_SPACE_HASH), calibration.get("space_sha256")
    if mine and theirs:
        return mine == theirs
    name = Path(calibration.get("space") or "").stem
    return bool(name) and name == Path(study.user_attrs.get(record.STUDY_SPACE) or "").stem


def holds_at_budget(calibration: dict, budget: int | None) -> bool:
    """Measured in the study's budget class: within BUDGET_CLASS times the calibration's budget either way."""
    measured = measured_budget(calibration)
    return bool(measured and budget) and measured / BUDGET_CLASS <= budget <= measured * BUDGET_CLASS


def find_calibration(study: optuna.Study) -> tuple[dict | None, str | None]:
    """The calibration that holds for the study: of its recipe and data, measured on its space and in its budget
    class; the newest in the same storage, else the one shipped. Returns (calibration, None), or (None, what it
    is not calibrated for: "recipe and data", "space" or "budget")."""
    key = study.user_attrs.get(record.STUDY_RECIPE_KEY)
    if key is None:
        return None, "recipe and data"
    stored = [
        s.user_attrs[record.STUDY_CALIBRATION]
        for s in storage_of(study).get_all_studies()  # the studies' attributes, none of their trials
        if s.user_attrs.get(record.STUDY_RECIPE_KEY) == key and record.STUDY_CALIBRATION in s.user_attrs
    ]
    shipped = [c for c in shipped_calibrations() if c.get("recipe_key") == key]
    budget = study.user_attrs.get(record.STUDY_BUDGET)
    for found in (stored, shipped):
        holding = [c for c in found if holds_on_space(c, study) and holds_at_budget(c, budget)]
        if holding:
            return max(holding, key=lambda c: c["created"]), None
    if not stored + shipped:
        return None, "recipe and data"
    return None, "budget" if any(holds_on_space(c, study) for c in stored + shipped) else "space"


def calibration_for(study: optuna.Study) -> dict | None:
    """The calibration that holds for the study, or None (see `find_calibration`)."""
    return find_calibration(study)[0]


def single_score_noise(calibration: dict | None) -> float | None:
    """The standard deviation of one seed's top-1, as the calibration measured it."""
    return (calibration or {}).get("noise", {}).get("pooled_std")


def summary_line(calibration: dict | None, missing: str | None = None) -> str:
    """The calibration in one line, for every front a study prints; without one, what the study is not calibrated
    for (`find_calibration`'s second answer)."""
    if not calibration:
        where = {"space": "this space", "budget": f"this budget (a calibration holds within {BUDGET_CLASS:g}x the budget it was measured at)"}
        return (f"proxy not calibrated for {where.get(missing, 'this recipe and data')}: differences of a few points may be "
                "seed noise (nas calibrate)")
    parts = []
    if "seed_to_seed" in calibration:
        parts.append(f"seed-to-seed tau {calibration['seed_to_seed']['tau']:.2f}")
    if "noise" in calibration:
        parts.append(f"one score's noise {calibration['noise']['pooled_std']:.1f} top-1 (std)")
    ref = calibration.get("against_reference", {}).get("proxy_top1")
    if ref:
        parts.append(f"tau vs reference {ref['tau']:.2f}")
    paper = calibration.get("against_published", {}).get("all")
    if paper:
        parts.append(f"tau vs papers {paper['proxy']:.2f} (MACs alone {paper['macs_only']:.2f})")
    where = "shipped with nas-unified, " if calibration.get("shipped") else ""
    return f"proxy calibration ({where}{calibration['created'][:10]}, {calibration['points']} points): " + ", ".join(parts)
