"""Results a user takes away: studies, the front and its dominance report, export to timm, the report."""

import json
import struct
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner

import nas  # noqa: F401  (registers timm's 'nas_unified')
from nas.cli import main
from nas.study import masked
from searchspace import build_model, load_spec


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def nas_fails(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2, result.output
    return result.output


def test_studies_lists_each_study_with_its_trials_by_state(results_study):
    url, study = results_study
    (row,) = json.loads(run("studies", "--storage", url, "--json").output)
    assert row["study"] == study.study_name and row["trials"] == len(study.trials)
    assert row["complete"] == 6 and row["fail"] == 1


def test_pareto_gives_the_front_and_which_presets_it_beats(results_study):
    url, study = results_study
    data = json.loads(run("pareto", "--storage", url, "--json").output)
    front = data["front"]
    assert front and all({"number", "spec_id", "preset", "macs", "params", "proxy_top1"} <= set(p) for p in front)
    macs = [p["macs"] for p in front]
    assert macs == sorted(macs) and [p["proxy_top1"] for p in front] == sorted(p["proxy_top1"] for p in front)
    (against,) = [d for d in data["dominated_presets"] if d["preset"] == "swin_t"]
    # no calibration and a single seed: the gain is printed, but never called a win
    assert against["verdict"] == "noise not measured" and "beats" not in against["text"]
    assert against["text"].startswith(f"trial {against['front_trial']} scores +40.0 top-1 over swin_t") and "GMACs" in against["text"]
    csv = run("pareto", "--storage", url, "--csv").output.splitlines()
    assert csv[0] == "number,spec_id,preset,macs,params,proxy_top1,proxy_top1_se" and len(csv) == len(front) + 1


def calibrate_with_noise(study, url, std):
    """A calibration run of the study's recipe and data whose figures give one score's noise `std`."""
    import optuna

    from trials import record

    run_study = optuna.create_study(study_name=f"calibration-{std}", storage=url)
    run_study.set_user_attr(record.STUDY_RECIPE_KEY, study.user_attrs[record.STUDY_RECIPE_KEY])
    run_study.set_user_attr(
        record.STUDY_CALIBRATION,
        {"created": f"2026-01-0{int(std) % 9 + 1}", "points": 12, "noise": {"pooled_std": std},
         "space": study.user_attrs[record.STUDY_SPACE], "budget": study.user_attrs[record.STUDY_BUDGET]},
    )


@pytest.mark.parametrize("std, verdict", [(30.0, "within noise of"), (5.0, "beats")])
def test_a_margin_inside_the_measured_noise_is_never_called_beats(results_study, std, verdict):
    # swin_t scored 40.0, the front's best point at no more MACs 80.0: a gain of 40 top-1 points. The
    # difference of two scores of noise s has noise s*sqrt(2): 42 at s = 30, far more than 40 once the
    # best of the study's trials is tested against swin_t; 7.1 at s = 5, far less.
    url, study = results_study
    calibrate_with_noise(study, url, std)
    data = json.loads(run("pareto", "--storage", url, "--study", study.study_name, "--json").output)
    (against,) = [d for d in data["dominated_presets"] if d["preset"] == "swin_t"]
    assert against["verdict"] == verdict and (against["p_value"] < 0.05) == (verdict == "beats")
    assert (against["top1_gain"] > against["noise_margin"]) == (verdict == "beats")
    assert against["noise_of_difference"] == pytest.approx(std * 2**0.5, abs=0.01)
    assert f"{std * 2**0.5:.1f} = {std:.1f} x sqrt(2)" in against["text"] and f"{against['noise_margin']:.1f}" in against["text"]
    assert against["chosen_among"] == 5  # every other fully trained trial has no more MACs than swin_t
    assert (" beats swin_t" in against["text"]) == (verdict == "beats")
    assert all(p["proxy_top1_se"] == std for p in data["front"]) and data["calibration"]["noise"]["pooled_std"] == std
    text = run("pareto", "--storage", url, "--study", study.study_name).output
    assert f"± {std:.1f}%" in text and "one score's noise" in text and "twice the noise" not in text


def noise_front(seed: int, gain: float = 0.0, noise: float = 2.0, points: int = 20):
    """An in-memory study of 5 presets and `points` searched points of MACs below theirs, every score its true
    value (all the same, 70) plus noise of one score `noise`; with `gain`, one searched point is truly better."""
    import numpy as np
    import optuna

    from trials import record

    rng = np.random.default_rng(seed)
    presets = [(f"preset_{i}", 4.5e9 - i * 0.2e9) for i in range(5)]
    searched = [(None, m) for m in rng.uniform(0.5e9, 3.5e9, points)]
    trials = []
    for i, (name, macs) in enumerate(presets + searched):
        true = 70.0 + (gain if i == len(presets) else 0.0)
        attrs = {record.SPEC_ID: f"p{i}", record.MACS: int(macs), record.PARAMS: 1, **({record.PRESET: name} if name else {})}
        trials.append(optuna.trial.create_trial(values=[true + rng.normal(0, noise), int(macs)], user_attrs=attrs))
    study = optuna.create_study(directions=list(record.DIRECTIONS))
    study.add_trials(trials)
    return study, {"created": "2026-01-01", "points": 20, "noise": {"pooled_std": noise}}


def test_a_front_of_pure_noise_beats_no_preset_in_at_least_95_percent_of_seeds():
    # The front's best point at no more MACs is the best of 20 noisy scores (the winner's curse), set against
    # 5 presets at once: "beats" must allow for both, or noise alone beats some preset in most seeds.
    from dashboards.front import dominance_report

    seeds = 400
    fooled = sum(any(d["verdict"] == "beats" for d in dominance_report(*noise_front(seed))) for seed in range(seeds))
    assert fooled <= 0.05 * seeds, f"pure noise beat a preset in {fooled} of {seeds} seeds"


def test_a_point_truly_better_by_five_times_the_noise_beats_the_presets_in_most_seeds():
    from dashboards.front import dominance_report

    seeds = 100
    won = sum(any(d["verdict"] == "beats" for d in dominance_report(*noise_front(seed, gain=10.0))) for seed in range(seeds))
    assert won >= 0.8 * seeds, f"a point better by 10 (noise 2) beat no preset in {seeds - won} of {seeds} seeds"


def test_an_exported_config_builds_the_same_network_here_and_through_timm(results_study, tmp_path):
    url, study = results_study
    out = tmp_path / "model.yaml"
    run("export", "--storage", url, "--best", "-o", str(out))
    config = __import__("yaml").safe_load(out.read_text())
    assert {"spec", "cost", "search", "provenance"} <= set(config)
    assert config["provenance"]["study"] == study.study_name and config["provenance"]["version"]
    ours = build_model(str(out), num_classes=10)
    theirs = timm.create_model("nas_unified", config=str(out), num_classes=10, pretrained=False)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert load_spec(str(out)).id == config["provenance"]["spec_id"]
    assert theirs(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    best = max(t.values[0] for t in study.best_trials)
    assert config["search"]["proxy_top1"] == best


def test_export_as_json_by_trial_number(results_study, tmp_path):
    url, study = results_study
    number = study.best_trials[0].number
    out = tmp_path / "model.json"
    run("export", "--storage", url, "--trial", str(number), "-o", str(out))
    assert json.loads(out.read_text())["provenance"]["trial"] == number


def test_export_refuses_unfinished_unknown_and_unwritable(results_study, tmp_path):
    url, study = results_study
    failed = next(t.number for t in study.trials if t.state.name == "FAIL")
    assert f"trial {failed} of 'tiny-4.5G-fashion-mnist' is FAIL (diverged" in nas_fails("export", "--storage", url, "--trial", str(failed))
    assert "no trial 99" in nas_fails("export", "--storage", url, "--trial", "99")
    assert "no study 'other' in" in nas_fails("export", "--storage", url, "--study", "other", "--best")
    assert "(studies: tiny-4.5G-fashion-mnist)" in nas_fails("export", "--storage", url, "--study", "other", "--best")
    assert "exactly one of --trial N and --best" in nas_fails("export", "--storage", url)
    assert "cannot write" in nas_fails("export", "--storage", url, "--best", "-o", str(tmp_path / "missing" / "m.yaml"))


def test_the_timm_built_model_answers_what_timms_training_script_asks(tmp_path):
    from timm.data import resolve_data_config
    from timm.optim import create_optimizer_v2

    model = timm.create_model("nas_unified", config="u_halonet_micro", num_classes=100, drop_path_rate=0.1)
    assert resolve_data_config({}, model=model)["input_size"] == (3, 224, 224)
    assert {n for n in model.no_weight_decay()} and all("rel_" in n for n in model.no_weight_decay())
    create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)  # reads no_weight_decay()
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5 and model(torch.randn(1, 3, 224, 224)).shape == (1, 5)


def test_an_exported_config_is_a_features_only_backbone_for_timm(results_study, tmp_path):
    url, _ = results_study
    out = tmp_path / "model.yaml"
    run("export", "--storage", url, "--best", "-o", str(out))
    dims = [stage.dim for stage in load_spec(str(out)).stages]
    backbone = timm.create_model("nas_unified", config=str(out), features_only=True, out_indices=(1, 2, 3)).eval()
    assert backbone.feature_info.channels() == dims[1:] and backbone.feature_info.reduction() == [8, 16, 32]
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 128, 128))
    assert [tuple(m.shape) for m in maps] == [(1, dims[1], 16, 16), (1, dims[2], 8, 8), (1, dims[3], 4, 4)]


def test_timm_passes_drop_rate_and_global_pool_to_the_network():
    model = timm.create_model("nas_unified", config="u_swin_micro", num_classes=7, drop_rate=0.25, global_pool="catavgmax")
    assert model.head.drop.p == 0.25 and model.head.global_pool.pool_type == "catavgmax"
    assert model.head_hidden_size == 2 * 384 and model.get_classifier().in_features == 2 * 384  # the pooled pre-logits
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_timm_entrypoint_refuses_pretrained_weights():
    from searchspace import NasError

    with pytest.raises(NasError, match="no pretrained weights"):
        timm.create_model("nas_unified", config="swin_t", pretrained=True)


def test_a_study_of_a_shipped_calibrations_recipe_and_data_prints_its_measured_noise(tmp_path):
    """The earlier default recipe on the embedded data was calibrated for the project (README, Proxy fidelity): a
    new search of it prints that calibration, and its noise decides what 'beats' means, with no nas calibrate."""
    from dashboards.calibration import calibration_for, shipped_calibrations, single_score_noise, summary_line
    from nas.study import open_search_study, open_storage
    from searchspace import load_space, parse_macs
    from trials import ProxyRecipe
    from trials.recipe import EARLIER_DEFAULT

    default = next(c for c in shipped_calibrations() if c["proxy_recipe"] == EARLIER_DEFAULT.key)
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study, _ = open_search_study(storage, "default", load_space("unified"), parse_macs("4.5G"), "fashion-mnist", EARLIER_DEFAULT)
    assert calibration_for(study) == default and single_score_noise(default) > 0
    assert summary_line(default).startswith("proxy calibration (shipped with nas-unified") and "tau vs reference" in summary_line(default)
    # the default recipe has a shipped calibration of its own, not the earlier default's; a recipe nobody calibrated none
    today, _ = open_search_study(storage, "today", load_space("unified"), parse_macs("4.5G"), "fashion-mnist", ProxyRecipe())
    assert calibration_for(today)["proxy_recipe"] == ProxyRecipe().key != default["proxy_recipe"]
    other, _ = open_search_study(storage, "other", load_space("unified"), parse_macs("4.5G"), "fashion-mnist", ProxyRecipe(subset=1024))
    assert calibration_for(other) is None
    calibrate_with_noise(study, f"sqlite:///{tmp_path}/s.db", 3.0)  # the storage's own calibration comes first
    assert single_score_noise(calibration_for(study)) == 3.0


@pytest.mark.parametrize(
    "space, budget, missing",
    [("unified", "4.5G", None), ("unified", "3G", None), ("tiny", "800M", "space"), ("tiny", "4.5G", "space"), ("unified", "800M", "budget")],
)
def test_a_shipped_calibration_holds_only_on_the_space_and_budget_class_it_was_measured_on(tmp_path, space, budget, missing):
    """The shipped calibrations were measured on the unified space with a panel up to 4.8G: a search of another
    space, or at a budget far from it, says it is not calibrated there instead of printing their noise."""
    from dashboards.calibration import calibration_for, find_calibration, summary_line
    from nas.study import open_search_study, open_storage
    from searchspace import load_space, parse_macs
    from trials.recipe import EARLIER_DEFAULT

    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study, _ = open_search_study(storage, "s", load_space(space), parse_macs(budget), "fashion-mnist", EARLIER_DEFAULT)
    calibration, why = find_calibration(study)
    assert (calibration_for(study) is None) == (missing is not None) == (calibration is None) and why == missing
    if missing:
        assert summary_line(calibration, why).startswith(f"proxy not calibrated for this {missing}")


def test_storage_passwords_never_reach_output():
    assert masked("postgresql://nas:s3cret@db.example/nas") == "postgresql://nas:***@db.example/nas"


def test_the_report_renders_the_front_presets_budget_and_buckets(results_study, tmp_path):
    url, study = results_study
    out = tmp_path / "report.html"
    run("report", "--storage", url, "-o", str(out))
    html = out.read_text()
    assert study.study_name in html and "Pareto front" in html and "Hypervolume over trials" in html
    assert "swin_t" in html and "budget 4.5G" in html and "Best architecture per MACs bucket" in html
    assert "scores +40.0 top-1 over swin_t" in html and "noise not measured" in html and "beats swin_t" not in html
    assert "stage 1:" in html and "plotly" in html and "proxy not calibrated" in html
    calibrate_with_noise(study, url, 5.0)
    run("report", "--storage", url, "--study", study.study_name, "-o", str(out))
    html = out.read_text()
    assert "beats swin_t" in html and "one score&#39;s noise 5.0" in html


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_png_is_a_real_picture_of_the_expected_size(results_study, tmp_path):
    url, _ = results_study
    run("report", "--storage", url, "-o", str(tmp_path / "r.html"), "--png", str(tmp_path / "r.png"))
    from dashboards.report import PNG_SIZE

    assert png_size(tmp_path / "r.png") == PNG_SIZE
    from PIL import Image

    with Image.open(tmp_path / "r.png") as img:
        darkest, lightest = img.convert("L").getextrema()
        assert lightest - darkest > 100  # drawn, not blank


@pytest.fixture
def latency_study(tmp_path):
    """A finished study of three objectives under a latency limit, its latencies from a predictor file that
    measured the two presets it trained (u_swin_micro, swin_t): one of each MACs class."""
    import optuna

    from latencylib import write_table
    from nas.latency_source import TableLatency
    from nas.searcher import StudySearcher
    from nas.study import open_search_study, open_storage
    from searchspace import load_space, parse_macs, preset
    from trials import ProxyRecipe
    from trials.goals import Goals

    url = f"sqlite:///{tmp_path}/nas_studies.db"
    table = TableLatency(write_table(tmp_path / "lat-test.json", measured=[(preset("u_swin_micro"), 18.0), (preset("swin_t"), 90.0)]))
    goals = Goals.of(parse_macs("4.5G"), latency=True, max_latency_ms=100)
    recipe, space = ProxyRecipe(subset=1024, val_size=256), load_space("tiny")
    study, _ = open_search_study(open_storage(url), "lat", space, parse_macs("4.5G"), "fashion-mnist", recipe, "search", goals, table.record())
    searcher = StudySearcher(
        study, space, parse_macs("4.5G"), recipe, 6, [preset("swin_t"), preset("u_swin_micro")],
        sampler=optuna.samplers.RandomSampler(seed=0), goals=goals, latency=table,
    )
    for i, top1 in enumerate([70.0, 60.0, 61.0, 58.0, 66.0]):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"epoch": 2, "proxy_top1": top1, "proxy_loss": 1.0, "train_seconds": 1.0, "images_per_second": 10.0, "device": "cpu"})
    return url, optuna.load_study(study_name="lat", storage=url)


def test_pareto_shows_latency_and_its_device_beside_macs_and_the_best_point_of_each_macs_class(latency_study):
    url, study = latency_study
    data = json.loads(run("pareto", "--storage", url, "--json").output)
    assert data["objectives"] == ["proxy_top1", "macs", "latency_ms"] and data["latency"]["table"] == "lat-test.json"
    assert all(p["latency_ms"] > 0 and p["latency_source"] for p in data["front"])
    swin = next(p for p in data["front"] if p["preset"] == "swin_t")
    assert swin["latency_ms"] == 90.0 and swin["latency_source"] == "measured"
    micro, tiny = data["classes"]  # derived from the presets' MACs: the micro networks and the tiny ones
    assert "u_swin_micro" in [p["preset"] for p in micro["presets"]] and "swin_t" in [p["preset"] for p in tiny["presets"]]
    assert 1e9 < micro["high_macs"] == tiny["low_macs"] < 3e9 and 0.2e9 < micro["low_macs"] < 0.6e9  # they meet between
    assert micro["best"]["preset"] == "u_swin_micro" and tiny["best"]["preset"] == "swin_t" and tiny["trained"] == 1
    text = run("pareto", "--storage", url).output
    assert "vs MACs and latency" in text and " ms " in text and "predicted by lat-test.json" in text and "Test CPU" in text
    assert "best measured point of each MACs class" in text and "0.61-0.86G" in text and "3.80-4.80G" in text


def test_the_report_and_the_dashboard_show_the_front_of_top1_vs_latency_with_its_device(latency_study, tmp_path):
    from dashboards.dashboard import publish

    url, study = latency_study
    out = tmp_path / "report.html"
    run("report", "--storage", url, "-o", str(out))
    html = out.read_text()
    assert "Proxy top-1 vs latency" in html and "Test CPU" in html and "latency &lt;= 100 ms" in html
    assert "The best point of each MACs class" in html and "<th class=\"num\">ms</th>" in html
    assert publish(study)["figures"] == 3  # the front, the hypervolume, top-1 vs latency
    from optuna_dashboard import get_note

    assert "Latency: Test CPU" in get_note(study)


def test_an_exported_config_carries_its_latency_and_the_device_it_holds_for(latency_study, tmp_path):
    import yaml

    url, study = latency_study
    swin = next(t for t in study.trials if t.user_attrs.get("preset") == "swin_t")
    run("export", "--storage", url, "--trial", str(swin.number), "-o", str(tmp_path / "m.yaml"))
    config = yaml.safe_load((tmp_path / "m.yaml").read_text())
    latency = config["cost"]["latency"]
    assert latency["ms"] == 90.0 and latency["source"] == "measured" and latency["device"]["cpu"] == "Test CPU"
    assert latency["table"] == "lat-test.json" and config["search"]["goals"]["objectives"][-1] == "latency_ms"


def test_the_macs_classes_come_from_the_presets_macs_and_hold_each_preset_once():
    from searchspace import macs_classes, preset_names, published

    classes = macs_classes()
    for name in preset_names():
        macs = published(name)["macs_g"] * 1e9
        assert sum(c.holds(macs) for c in classes) == 1 and any(name in c.presets for c in classes if c.holds(macs))
    assert all(a.high == b.low for a, b in zip(classes, classes[1:]))  # neighbours meet: every MACs in one class
    assert len(macs_classes(gap=100)) == 1 and len(macs_classes(gap=1.0001)) > len(classes)
