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
from trials import record as R

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
    fast = ["--space", "tiny", "--data", str(proxy_data_dir), "--subset", "96", "--proxy-epochs", "1"]
    reference = ["--reference-subset", "128", "--reference-epochs", "1"]
    run = nas("calibrate", *fast, *reference, "--points", "3", "--no-presets", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout)
    assert figures["points"] == 3 and figures["seed_to_seed"]["seeds"] == 2 and "pooled_std" in figures["noise"]
    assert {"proxy_top1", "macs_only"} <= set(figures["against_reference"]) and figures["collapsed"]
    url = f"sqlite:///{tmp_path}/nas_studies.db"
    runs = [optuna.load_study(study_name=name, storage=url) for name in figures["studies"]]
    assert [s.user_attrs[R.STUDY_ROLE] for s in runs] == ["proxy", "proxy", "reference"]
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
    # the default recipes are the ones the shipped calibrations measured (their runs' keys are unchanged)
    assert all(c["reference_recipe"] == default.reference.key for c in shipped_calibrations())
    assert any(c["proxy_recipe"] == default.proxy.key for c in shipped_calibrations())
