"""Proxy fidelity, measured: what a proxy's maps cannot see, the calibration's figures, and `nas calibrate` /
`nas confirm` end to end on a tiny panel."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from dashboards.calibration import agreement, figures, similar_macs_groups
from nas.calibrate import default_panel, family
from searchspace import count, load_space, preset
from searchspace.collapse import collapsed_axes
from trials import ProxyRecipe
from trials import record

BIN = Path(sys.executable).parent


def test_at_28_px_the_collapsed_axes_name_windows_that_cover_their_maps_and_the_keep_rule_restores_them():
    space = load_space("unified")
    clamp = collapsed_axes(space, 28, 2, "clamp")
    proxy_only = {(r["stage"], r["dimension"]) for r in clamp if not r["also_at_full_size"]}
    # stage 2's map is 7x7 at the proxy (28x28 at 224): its 7x7 window is global attention and shifts nothing
    assert {(2, "window kernel"), (2, "shift"), (3, "sliding kernel")} <= proxy_only
    assert all(r["also_at_full_size"] for r in clamp if r["stage"] == 4 and r["dimension"] == "window kernel")
    keep = collapsed_axes(space, 28, 2, "keep")
    assert not {(r["stage"], r["dimension"]) for r in keep if not r["also_at_full_size"]} & {(2, "window kernel"), (2, "shift")}
    assert len(keep) < len(clamp)


def test_the_keep_rule_gives_each_stage_its_full_size_number_of_windows():
    spec = ProxyRecipe(windows="keep").proxy_spec(preset("swin_t"))
    assert [s.mixer.kernel for s in spec.stages] == [2, 2, 2, 2]  # on 14/7/4/2 maps: 7, 4, 2, 1 windows per side
    assert ProxyRecipe(windows="keep").proxy_id(preset("swin_t")) != ProxyRecipe(windows="clamp").proxy_id(preset("swin_t"))
    assert ProxyRecipe().windows == "keep"  # the default, chosen by calibration (README "Proxy fidelity")


def panel_frame(proxy_seeds, reference, macs, presets=None):
    rows = []
    for seed, scores in enumerate(proxy_seeds):
        rows += [{"role": "proxy", "seed": seed, "point": f"p{i}", "top1": s, "sotl": 10 - s / 10, "seconds": 2.0} for i, s in enumerate(scores)]
    rows += [{"role": "reference", "seed": 0, "point": f"p{i}", "top1": s, "sotl": 1.0, "seconds": 20.0} for i, s in enumerate(reference)]
    frame = pd.DataFrame(rows)
    frame["macs"] = frame.point.map({f"p{i}": m for i, m in enumerate(macs)})
    frame["preset"] = frame.point.map({f"p{i}": p for i, p in enumerate(presets or [None] * len(macs))})
    return frame


def test_calibration_figures_measure_seed_agreement_noise_reference_agreement_and_cost():
    proxy = [[50, 60, 70, 80, 90], [52, 58, 71, 83, 88]]  # the same ranking, scores a few points apart
    reference = [90, 80, 70, 60, 50]  # the reverse
    f = figures(panel_frame(proxy, reference, macs=[1e9, 2e9, 3e9, 4e9, 5e9]))
    assert f["seed_to_seed"]["tau"] == pytest.approx(1.0) and f["seed_to_seed"]["seeds"] == 2
    assert f["noise"]["pooled_std"] == pytest.approx(((4 + 4 + 1 + 9 + 4) / 5 / 2) ** 0.5)
    assert f["noise"]["largest_difference"] == 3 and f["noise"]["worst_point"] == "p3"
    assert f["against_reference"]["proxy_top1"]["tau"] == pytest.approx(-1.0)
    assert f["against_reference"]["macs_only"]["tau"] == pytest.approx(-1.0)
    assert f["cost"]["proxy"]["seconds_per_trial"] == 2.0 and f["cost"]["reference"]["seconds_per_trial"] == 20.0


def test_papers_agreement_counts_presets_overall_and_among_similar_macs():
    names = ["swin_t", "dwnet_t", "ddwnet_t", "u_swin_micro", "u_pvt_micro"]
    macs = [count(preset(n)).macs for n in names]
    f = figures(panel_frame([[80, 70, 60, 50, 40], [80, 71, 60, 52, 40]], [80, 70, 60, 50, 40], macs, presets=names))
    paper = f["against_published"]
    assert paper["all"]["presets"] == names and -1 <= paper["all"]["proxy"] <= 1 and "macs_only" in paper["all"]
    assert [sorted(g["presets"]) for g in paper["similar_macs"]] == [["ddwnet_t", "dwnet_t", "swin_t"]]
    assert similar_macs_groups({"a": 1.0, "b": 1.2, "c": 1.4, "d": 5.0}) == [["a", "b", "c"]]


def test_agreement_intervals_hold_the_estimate():
    a = agreement([1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 3, 5, 4, 6, 8, 7])
    assert a["tau_ci"][0] <= a["tau"] <= a["tau_ci"][1] and a["n"] == 8


def test_the_default_panel_holds_the_presets_and_convolution_like_attention_and_hybrid_points():
    panel = default_panel(None, 4_500_000_000, 6, seed=0)
    drawn = [s for s in panel if not s.name]
    assert {preset("swin_t").id, preset("dwnet_t").id} <= {s.id for s in panel}
    assert len(drawn) == 6 and {family(s) for s in drawn} == {"convolution-like", "attention", "hybrid"}
    assert all(count(s).macs <= 4_500_000_000 for s in panel)


def nas(*args, cwd):
    return subprocess.run([str(BIN / "nas"), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_calibrating_a_tiny_panel_stores_every_run_and_its_figures_reach_search_and_confirm(tmp_path, proxy_data_dir):
    # a few steps each, so a network is told from chance (a training that ends at chance fails as collapsed)
    fast = ["--space", "tiny", "--data", str(proxy_data_dir), "--subset", "256", "--held-out", "512", "--proxy-epochs", "2"]
    reference = ["--reference-subset", "384", "--reference-held-out", "512", "--reference-epochs", "2"]
    run = nas("calibrate", *fast, *reference, "--points", "3", "--no-presets", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    assert figures["points"] == 3 and figures["seed_to_seed"]["seeds"] == 2 and "pooled_std" in figures["noise"]
    assert {"proxy_top1", "macs_only"} <= set(figures["against_reference"]) and figures["collapsed"]
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    runs = [optuna.load_study(study_name=name, storage=url) for name in figures["studies"]]
    assert [s.user_attrs[record.STUDY_ROLE] for s in runs] == ["proxy", "proxy", "reference"]
    assert all(len(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3 for s in runs)

    search = nas("search", "--budget", "4.5G", *fast, "--trials", "2", "--scheduler", "none", cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "proxy calibration" in search.stdout and f"one score's noise {figures['noise']['pooled_std']:.1f}" in search.stdout
    confirm = nas("confirm", "--study", "tiny-4.5G-fashion-mnist", "--data", str(proxy_data_dir), "--no-presets", *reference, "--json", cwd=tmp_path)
    assert confirm.returncode == 0, confirm.stderr[-3000:]
    confirmation = json.loads(confirm.stdout)
    assert confirmation["seeds"] == 2 and confirmation["front"] >= 1
    pareto = json.loads(nas("pareto", "--study", "tiny-4.5G-fashion-mnist", "--json", cwd=tmp_path).stdout)
    assert all(p["confirmed"] in (True, False) for p in pareto["front"]) and pareto["confirmation"]["studies"]


# --- calibrate and confirm without Ray: each run trained by a stand-in for nas.calibrate.train_panel ------------
def score_of(spec_id: str, seed: int) -> float:
    """A made-up top-1 per point and seed: the point's level plus a seed's noise of a point or two."""
    return 50.0 + int(spec_id[:6], 16) % 40 + (int(spec_id[-4:], 16) + 7 * seed) % 3


def trained_by(score=score_of, fails=()):
    """What train_panel does, without Ray: the run's study created or resumed as a search would (the real
    searcher, queue and checks), every point it queues trained to `score(id, seed)`; (id, seed) in `fails` fail."""
    from ray.tune.search import Searcher

    from nas.searcher import StudySearcher
    from nas.study import open_search_study, open_storage
    from trials import data_name

    def train_panel(opts, panel, role, recipe, name, console):
        space = load_space(opts.space)
        study, _ = open_search_study(open_storage(opts.storage), name, space, opts.budget, data_name(opts.data), recipe, role)
        searcher = StudySearcher(study, space, opts.budget, recipe, len(panel), panel, draws=False)
        for i in range(len(panel)):
            config = searcher.suggest(f"t{i}")
            if config == Searcher.FINISHED:
                break
            if (config["spec_id"], recipe.seed) in fails:
                searcher.fail(f"t{i}", "out of memory: the trial's process needed more than it may allocate")
            else:
                result = {"epoch": recipe.epochs, "proxy_top1": score(config["spec_id"], recipe.seed), "train_seconds": 1.0, "train_loss_sum": 1.0}
                searcher.on_trial_complete(f"t{i}", result)
        return study

    return train_panel


def confirm_options(url, **kwargs):
    from nas.calibrate import ConfirmOptions

    return ConfirmOptions(study="tiny-4.5G-fashion-mnist", storage=url, recipe=ProxyRecipe(epochs=1, seed=0), presets=False, **kwargs)


def take_the_front(url, study):
    """A new point of the search, cheaper and better than every point of its front: the front is now that point."""
    from nas.searcher import StudySearcher

    space = load_space("tiny")
    recipe = record.stored_recipe(study)
    cheapest, _ = space.cheapest()
    assert cheapest.id not in {t.user_attrs.get(record.SPEC_ID) for t in study.trials}
    searcher = StudySearcher(study, space, study.user_attrs[record.STUDY_BUDGET], recipe, 1, [cheapest], draws=False)
    config = searcher.suggest("new")
    searcher.on_trial_complete("new", {"epoch": recipe.epochs, "proxy_top1": 99.0, "train_seconds": 1.0})
    return config["trial_number"]


def test_confirm_run_again_after_the_front_moved_confirms_the_current_front(results_study, monkeypatch):
    from dashboards.front import pareto_frame
    from nas.calibrate import confirm

    url, study = results_study
    monkeypatch.setattr("nas.calibrate.train_panel", trained_by())
    first = confirm(confirm_options(url))
    assert set(first["points"]) == {str(n) for n in pareto_frame(study)["number"]}
    newest = take_the_front(url, study)
    second = confirm(confirm_options(url))  # resumes the same confirm studies, which hold the old front's points
    assert set(second["points"]) == {str(newest)} and second["front"] == 1
    assert second["studies"] == first["studies"]


def test_a_front_point_whose_noise_is_unknown_is_not_confirmed(results_study, monkeypatch):
    from dashboards.front import pareto_frame
    from nas.calibrate import confirm

    url, study = results_study
    front = pareto_frame(study)
    lost = front[record.SPEC_ID].iloc[0]  # its second seed fails: one score, no noise
    monkeypatch.setattr("nas.calibrate.train_panel", trained_by(fails={(lost, 1)}))
    result = confirm(confirm_options(url))
    point = result["points"][str(int(front["number"].iloc[0]))]
    assert point["confirmed"] is False and point["verdict"] == "noise unknown" and point["se"] is None
    assert result["noise_unknown"] == 1 and result["confirmed"] <= result["front"] - 1

    from click.testing import CliRunner

    from nas.cli import main

    table = CliRunner().invoke(main, ["pareto", "--storage", url, "--study", study.study_name], catch_exceptions=False).output
    assert "no: noise unknown" in table and "1 noise unknown" in table
    rows = json.loads(CliRunner().invoke(main, ["pareto", "--storage", url, "--study", study.study_name, "--json"], catch_exceptions=False).output)["front"]
    assert [r["confirmed"] for r in rows if r["spec_id"] == lost] == [False]


def calibrate_options(url, budget="4.5G", points=4):
    from nas.calibrate import CalibrateOptions
    from searchspace import parse_macs

    return CalibrateOptions(
        budget=parse_macs(budget), space="tiny", storage=url, points=points, presets=False,
        proxy=ProxyRecipe(epochs=1), reference=ProxyRecipe(epochs=2),
    )


def test_calibrating_again_at_another_budget_or_panel_measures_that_panel_in_runs_of_its_own(tmp_path, monkeypatch):
    from nas.calibrate import calibrate

    url = f"sqlite:///{tmp_path}/s.db"
    monkeypatch.setattr("nas.calibrate.train_panel", trained_by())
    monkeypatch.setattr("dashboards.calibration.BOOTSTRAP", 50)  # the intervals are not what this test checks
    first = calibrate(calibrate_options(url, points=4))
    assert first["points"] == 4 and first["budget"] == 4_500_000_000
    fewer = calibrate(calibrate_options(url, points=3))  # another panel: never mixed with the first one's points
    assert fewer["points"] == 3 and not set(fewer["studies"]) & set(first["studies"])
    cheaper = calibrate(calibrate_options(url, budget="2G", points=4))  # another budget: not a refusal
    assert cheaper["points"] == 4 and cheaper["budget"] == 2_000_000_000 and not set(cheaper["studies"]) & set(first["studies"])
    again = calibrate(calibrate_options(url, points=4))  # the same measurement again: the same runs, nothing retrained
    assert again["studies"] == first["studies"]
    assert all(len(optuna.load_study(study_name=n, storage=url).trials) == 4 for n in first["studies"])


def test_the_reference_stem_stride_adapts_to_the_reference_resolution_as_the_proxys_does(monkeypatch):
    from click.testing import CliRunner

    from dashboards.calibration import shipped_calibrations
    from nas.cli import main

    seen = []
    monkeypatch.setattr("nas.calibrate.calibrate", lambda opts, console=None: seen.append(opts) or {})
    monkeypatch.setattr("nas.calibrate.confirm", lambda opts, console=None: seen.append(opts) or {})
    for args in (["calibrate", "--reference-resolution", "112"], ["confirm", "--reference-resolution", "112"], ["calibrate"]):
        result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    at_112 = [seen[0].reference, seen[1].recipe]
    assert all(r.stem_stride == 4 and "maps 28/14/7/4" in r.describe() for r in at_112)  # as at 224: 56/28/14/7 at a quarter
    default = seen[2]
    # the shipped calibrations: the earlier recipes' (whose keys the fields added since leave unchanged), and the
    # default's own, against the default reference
    from trials.recipe import EARLIER_DEFAULT, EARLIER_REFERENCE

    def recipes(proxy: dict, reference: dict) -> tuple:
        return tuple(sorted(proxy.items())), tuple(sorted(reference.items()))

    shipped = {recipes(c["proxy_recipe"], c["reference_recipe"]) for c in shipped_calibrations()}
    assert recipes(EARLIER_DEFAULT.key, EARLIER_REFERENCE.key) in shipped
    assert recipes(default.proxy.key, default.reference.key) in shipped
    assert default.proxy.key != EARLIER_DEFAULT.key and default.reference.key != EARLIER_REFERENCE.key
