"""Measured latency and the per-device predictor, as a user and the search use them (no timing asserts: figures
belong to benchmarks/latency.py)."""

import json
import math
import subprocess

import pytest
import torch
from click.testing import CliRunner

from nas.cli import main
from searchspace import load_space, parse_macs, preset, published
from searchspace import NasError
from searchspace.latency import BACKENDS, Device, Latency, Protocol, Timing, measure, measure_latency
from searchspace.latency_table import LatencyTable, build, draw, parts

# tiny images, few runs: a measurement takes milliseconds
QUICK = dict(img_size=32, num_classes=10, min_runs=3, min_seconds=0.01, threads=1)


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def nas(*args):
    """The command's exit code and its error output, as a shell sees them."""
    result = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def test_measure_times_any_callable_with_its_median_spread_and_runs():
    timing = measure(lambda x: x @ x.T, torch.ones(4, 64), min_runs=5, min_seconds=0.01)
    assert timing.batch == 4 and timing.runs >= 5 and timing.per_run >= 1
    assert timing.median_ms > 0 and timing.iqr_ms >= 0
    assert Timing.from_dict(json.loads(json.dumps(timing.to_dict()))) == timing


def test_a_measurement_carries_latency_throughput_spread_protocol_and_device_and_round_trips_json():
    spec = load_space("tiny").sample(0)
    result = measure_latency(spec, Protocol(throughput_batch=3, **QUICK))
    assert result.id == spec.id and result.macs > 0 and result.params > 0
    assert result.latency.batch == 1 and result.throughput.batch == 3 and result.images_per_second > 0
    assert result.protocol.img_size == 32 and result.device.threads == 1
    data = json.loads(result.to_json())
    assert {"latency_ms", "latency_iqr_ms", "images_per_second", "protocol", "device"} <= set(data)
    assert Latency.from_dict(data) == result


def test_onnxruntime_is_a_second_backend_and_the_device_names_its_version():
    import onnxruntime

    spec = load_space("tiny").sample(0)
    result = measure_latency(spec, Protocol(throughput_batch=0, backend="onnxruntime", **QUICK))
    assert result.latency.median_ms > 0 and result.device.backend == f"onnxruntime {onnxruntime.__version__}"
    assert "onnxruntime" in result.device.describe() and not result.device.same_as(Device.here(Protocol(**QUICK)))
    with pytest.raises(NasError, match="onnxruntime measures fp32 on the CPU"):
        BACKENDS["onnxruntime"](torch.nn.Identity(), torch.ones(1, 3), torch.bfloat16)


def test_the_device_fingerprint_names_cpu_cores_threads_versions_backend_and_load():
    device = Device.here(Protocol(threads=1))
    data = device.to_dict()
    assert {"cpu", "cores", "threads", "gpu", "torch", "cuda", "backend", "load_average"} <= set(data)
    assert data["cpu"] and data["cores"] >= 1 and data["threads"] == 1 and data["torch"] == torch.__version__
    assert data["backend"] == "torch" and data["gpu"] is None and len(data["load_average"]) == 3
    later = Device.from_dict({**data, "load_average": [9.0, 9.0, 9.0]})
    assert later.same_as(device) and not Device.from_dict({**data, "threads": 2}).same_as(device)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dtype", "bf16"], "--dtype bf16 is measured on CUDA only"),
        (["--clock", "cpu"], "--clock cpu times one CPU thread: give --threads 1"),
        (["--device", "nowhere"], "--device 'nowhere' is not a device"),
    ],
)
def test_a_protocol_this_machine_cannot_run_is_refused_in_one_line(args, message):
    result = nas("latency", "measure", "u_dwconv_micro", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_latency_measure_json_gives_ms_img_s_spread_and_device_per_network():
    result = run("latency", "measure", "u_dwconv_micro", "u_pvt_micro", "--img-size", "32", "--batch", "2",
                 "--min-runs", "3", "--threads", "1", "--json")
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["u_dwconv_micro", "u_pvt_micro"]
    for row in rows:
        assert row["latency_ms"] > 0 and row["latency_iqr_ms"] >= 0 and row["images_per_second"] > 0
        assert row["throughput"]["batch"] == 2 and row["device"]["threads"] == 1 and row["protocol"]["img_size"] == 32


def test_arch_show_latency_adds_a_latency_block(monkeypatch):
    import nas.latency

    default = nas.latency.protocol_of  # nas latency measure's defaults, on one thread (the tests share 2 cores)
    monkeypatch.setattr(nas.latency, "protocol_of", lambda **options: default(threads=1, **options))
    data = json.loads(run("arch", "show", "u_dwconv_micro", "--img-size", "32", "--latency", "--json").stdout)
    assert data["latency"]["latency_ms"] > 0 and data["latency"]["protocol"]["img_size"] == 32
    assert data["macs"] == data["latency"]["macs"]
    assert "latency" not in json.loads(run("arch", "show", "u_dwconv_micro", "--json").stdout)


def test_arch_list_latency_puts_measured_img_s_beside_the_papers_and_ranks_them(monkeypatch):
    # measurement replaced by figures in the papers' order, so the plumbing (not this machine) is tested
    import searchspace.latency as latency

    def fake(name, protocol):
        spec = preset(name)
        img_s = published(name).get("img_s") or 100.0
        timing = Timing(batch=8, median_ms=8000 / img_s, iqr_ms=1.0, runs=15)
        device = Device.here(protocol)
        return Latency(name, spec.id, 1, 1, Timing(1, 1000 / img_s, 0.1, 15), timing, protocol, device)

    monkeypatch.setattr(latency, "measure_latency", fake)
    data = json.loads(run("arch", "list", "--latency", "--json").stdout)
    swin = next(r for r in data["presets"] if r["name"] == "swin_t")
    assert swin["published_images_per_second"] == 713.5 and swin["images_per_second"] == pytest.approx(713.5)
    assert data["throughput_agreement"] == {"presets": 5, "kendall_tau": 1.0, "throughput_batch": 8}
    text = run("arch", "list", "--latency").stdout
    assert "img/s published" in text and "Kendall tau +1.00 over the 5 presets" in text


def test_the_papers_throughput_is_kept_with_the_presets_reference_figures():
    assert published("swin_t")["img_s"] == 713.5 and published("iddwnet_t")["img_s"] == 685.3
    assert "Table 2" in published("dwnet_t")["img_s_source"] and "img_s" not in published("u_pvt_micro")


def test_a_block_is_one_part_per_shape_and_shifted_only_where_its_window_shifts():
    keyed = parts(preset("swin_t"))
    kinds = [p.kind for p, _ in keyed]
    assert kinds[0] == "stem" and kinds[-1] == "head" and kinds.count("downsample") == 3
    blocks = [(p.what, n) for p, n in keyed if p.kind == "block"]
    # stages 1-3 alternate plain and shifted windows; on stage 4's 7x7 map the window is the map and never shifts
    assert blocks == [
        ("stage 1 block 96 @ 56x56", 1), ("stage 1 block 96 @ 56x56 shifted", 1),
        ("stage 2 block 192 @ 28x28", 1), ("stage 2 block 192 @ 28x28 shifted", 1),
        ("stage 3 block 384 @ 14x14", 3), ("stage 3 block 384 @ 14x14 shifted", 3),
        ("stage 4 block 768 @ 7x7", 2),
    ]
    assert parts(preset("swin_t"))[1][0].key == keyed[1][0].key  # keys are stable


# --- the predictor file: one tiny build shared by the tests below ------------------------------------------
@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    specs = draw(load_space("tiny"), parse_macs("4.5G"), 6, seed=0, presets=False)
    table = build(specs, Protocol(throughput_batch=0, **QUICK), folds=3, say=lambda line: None)
    path = tmp_path_factory.mktemp("latency") / "lat-here.json"
    table.save(path)
    return path, specs


def test_a_predictor_file_records_the_device_protocol_every_point_and_both_predictors_held_out(tiny_table):
    path, specs = tiny_table
    data = json.loads(path.read_text())
    assert data["device"]["threads"] == 1 and data["protocol"]["img_size"] == 32 and data["protocol"]["min_runs"] == 3
    assert set(data["points"]) == {s.id for s in specs}
    for predictor in ("lut", "model"):
        assert {"n", "tau", "within_10pct", "median_error"} <= set(data["evaluation"][predictor])
        assert data["evaluation"][predictor]["n"] == len(specs)
    assert data["predictor"] in ("lut", "model") and data["evaluation"]["measurement"]["median_relative_iqr"] >= 0


def test_a_predictor_file_loads_back_to_the_same_predictions(tiny_table):
    path, specs = tiny_table
    built, loaded = LatencyTable.load(path), LatencyTable.load(path)
    loaded.save(path.with_name("again.json"))
    again = LatencyTable.load(path.with_name("again.json"))
    unmeasured = load_space("tiny").sample_within(parse_macs("4.5G"), 12, seed=7)
    for spec in specs + unmeasured:
        assert again.predict(spec) == built.predict(spec)
        for predictor in ("lut", "model"):
            assert again.predict_with(predictor, spec) == built.predict_with(predictor, spec)


def test_a_measured_point_is_predicted_as_measured(tiny_table):
    path, specs = tiny_table
    table = LatencyTable.load(path)
    data = json.loads(path.read_text())
    for spec in specs:
        assert table.source(spec) == "measured" and table.predict(spec) == data["points"][spec.id]["ms"]


def test_an_unmeasured_point_is_predicted_without_building_a_network(tiny_table, monkeypatch):
    path, specs = tiny_table
    table = LatencyTable.load(path)
    spec = next(s for s in load_space("tiny").sample_within(parse_macs("4.5G"), 40, seed=3) if s.id not in table.points)

    def no_modules(*args, **kwargs):
        raise AssertionError("predicting built a module")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_modules)
    ms = table.predict(spec)
    assert math.isfinite(ms) and ms > 0 and table.source(spec) in ("lut", "lut+model", "model")


def test_latency_predict_says_what_answered(tiny_table):
    path, specs = tiny_table
    data = json.loads(run("latency", "predict", str(path), "swin_t", "--json").stdout)
    assert data["predictions"][0]["source"] in ("lut+model", "model") and data["predictions"][0]["ms"] > 0
    assert data["device"]["threads"] == 1


def test_a_file_that_is_not_a_predictor_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "lat.json"
    bad.write_text("{}")
    result = nas("latency", "predict", str(bad), "swin_t")
    assert result.returncode == 2 and "not a latency table" in result.stderr
    result = nas("latency", "predict", str(tmp_path / "missing.json"), "swin_t")
    assert result.returncode == 2 and "nas latency build -o" in result.stderr


def test_the_models_features_follow_the_lookup_tables_parts():
    from searchspace.latency_table import part_features

    for spec in [preset(n) for n in ("swin_t", "mixformer_b1", "u_halonet_micro")] + load_space("unified").sample_within(parse_macs("4.5G"), 20, seed=1):
        keyed, featured = parts(spec), part_features(spec)
        assert [n for _, n in keyed] == [n for _, n in featured]
        assert all(f"{p.kind} calls" in f for (p, _), (f, _) in zip(keyed, featured))


def test_too_few_points_to_hold_out_are_refused_before_measuring():
    result = nas("latency", "build", "--space", "tiny", "--points", "3", "--no-presets", "--folds", "5", "-o", "never.json")
    assert result.returncode == 2 and "3 points cannot be fitted and held out in 5 folds" in result.stderr
