"""ONNX export as a user deploys a network or measures it in onnxruntime: every kernel of the token mixer
exports, onnxruntime computes what PyTorch computes, and a kernel that cannot export is named in one line."""

import copy
import json
import subprocess
import sys

import onnxruntime as ort
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import Tensor, nn

from nas.cli import main
from searchspace import NasError, build_model
from searchspace import onnx_export as E
from searchspace.axes.sliding import Sliding
from searchspace.mixer import TokenMixer
from searchspace.spec import MixerSpec, register_connectivity, unregister

# One mixer per kernel function of the mixer's axes, with the options that change its graph.
KERNELS = [
    dict(connectivity="window", dynamic="attention", kernel=4, shift=True, heads=2),
    dict(connectivity="window", dynamic="static", kernel=4, shift=True, shared_positions=False, heads=2),
    dict(connectivity="window", dynamic="inhomogeneous", kernel=4, shift=True, weight_norm="filter_norm", heads=2),
    dict(connectivity="halo", dynamic="attention", kernel=4, halo=1, heads=2),
    dict(connectivity="sliding", dynamic="static", kernel=3, heads=16),
    dict(connectivity="sliding", dynamic="homogeneous", kernel=3, heads=2),
    dict(connectivity="sliding", dynamic="inhomogeneous", kernel=3, weight_norm="softmax", heads=2),
    dict(connectivity="sliding", dynamic="hadamard", kernel=3, ghost_head=True, heads=2),
    dict(connectivity="sliding", dynamic="attention", kernel=3, heads=2),
    dict(connectivity="global", dynamic="attention", heads=2),
    dict(connectivity="global", dynamic="attention", reduction=2, heads=2),
    dict(connectivity="deformable", dynamic="inhomogeneous", kernel=3, heads=2),
]


class EveryKernel(nn.Module):
    """Every kernel side by side on one 8x8 map of 16 channels (the shifted variant where there is one)."""

    def __init__(self):
        super().__init__()
        self.mixers = nn.ModuleList(TokenMixer(MixerSpec(**k), 16, (8, 8), shifted=True) for k in KERNELS)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(mixer(x) for mixer in self.mixers)


def test_every_kernel_of_the_token_mixer_runs_in_onnxruntime_as_in_pytorch():
    exported = E.to_onnx(EveryKernel(), torch.randn(2, 8, 8, 16))
    session = exported.session()
    assert len(session.get_outputs()) == len(KERNELS) and exported.max_abs_diff <= 1e-4


@pytest.mark.parametrize("name", ["u_swin_micro", "u_internimage_micro"])
def test_a_preset_exports_within_1e4_of_pytorch_and_still_runs_in_pytorch_after(name):
    model = build_model(name, num_classes=10, img_size=64).eval()
    twin = copy.deepcopy(model)  # never exported
    x = torch.randn(1, 3, 64, 64)
    exported = E.to_onnx(model, x, name=name)  # before any eager run: its masks and grids are made while traced
    assert exported.max_abs_diff <= 1e-4 and exported.input_shape == (1, 3, 64, 64)
    with torch.no_grad():  # what the trace made must not stay behind in the model's caches
        before = twin(x)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    session = exported.session()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), before, rtol=0, atol=1e-4)


def test_the_onnxruntime_runner_runs_one_forward_pass_per_call():
    model = build_model("u_dwconv_micro", num_classes=10, img_size=32)
    x = torch.randn(2, 3, 32, 32)
    run = E.onnxruntime_runner(model, x, threads=1)
    (logits,) = run()
    assert logits.shape == (2, 10) and model.training  # the caller's mode is left as it was


# --- a kernel of one's own that has no ONNX translation ---------------------------------------------------
@torch.library.custom_op("nas_test::roll_down", mutates_args=())
def roll_down(x: Tensor) -> Tensor:
    return torch.roll(x, 1, 1)


@roll_down.register_fake
def _(x):
    return torch.empty_like(x)


class Rolled(Sliding):
    """A depth-wise convolution whose output moves one row down, through a custom op without ONNX translation."""

    name = "rolled"

    def _rolled(self, mixer, x, gate):
        return roll_down(Sliding._conv(self, mixer, x, gate))

    kernels = {"static": _rolled}


@pytest.fixture
def rolled_spec(tmp_path):
    register_connectivity(Rolled)
    path = tmp_path / "rolled.yaml"
    mixer = {"connectivity": "rolled", "dynamic": "static", "kernel": 3, "heads": 16}
    path.write_text(yaml.safe_dump({"name": "rolled_net", "stages": [{"depth": 1, "dim": 16, "mixer": mixer}]}))
    yield path
    unregister(Rolled)


def test_a_kernel_without_onnx_translation_is_refused_in_one_line_naming_it(rolled_spec, tmp_path):
    with pytest.raises(NasError) as refused:
        E.to_onnx(build_model(str(rolled_spec), img_size=32), torch.randn(1, 3, 32, 32), name="rolled_net")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("rolled_net cannot be exported to ONNX: ")
    assert "the token mixer's rolled/static kernel (Rolled._rolled) fails in torch.onnx.export" in message
    assert "No ONNX function found for" in message and "nas_test" in message  # the op it stops at, and why
    result = CliRunner().invoke(main, ["arch", "export", str(rolled_spec), "--onnx", str(tmp_path / "r.onnx"), "--img-size", "32"])
    assert result.exit_code == 2 and "rolled/static kernel" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.onnx").exists()


def test_an_export_that_onnxruntime_computes_differently_is_refused_and_never_written(monkeypatch, tmp_path):
    from onnxscript import opset18 as op

    real = E.onnx_translations

    def aggregate_nothing(value, weight, kernel: int):  # as if each pixel's filter were 1 on itself
        return op.Identity(value)

    def wrong():
        return {**real(), torch.ops.nas_unified.sliding_aggregate.default: aggregate_nothing}

    monkeypatch.setattr(E, "onnx_translations", wrong)
    spec = tmp_path / "involution.yaml"
    mixer = {"connectivity": "sliding", "dynamic": "inhomogeneous", "kernel": 3, "heads": 2}
    spec.write_text(yaml.safe_dump({"name": "involution_net", "stages": [{"depth": 1, "dim": 16, "mixer": mixer}]}))
    result = CliRunner().invoke(main, ["arch", "export", str(spec), "--onnx", str(tmp_path / "i.onnx"), "--img-size", "32"])
    assert result.exit_code == 2, result.output
    assert "the token mixer's sliding/inhomogeneous kernel (Sliding._per_pixel) differs from PyTorch by" in result.output
    assert not (tmp_path / "i.onnx").exists()


# --- the commands --------------------------------------------------------------------------------------------
def test_nas_arch_export_writes_an_onnx_file_that_onnxruntime_loads(tmp_path):
    path = tmp_path / "pvt.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "nas.cli", "arch", "export", "u_pvt_micro", "--onnx", str(path), "--img-size", "64",
         "--num-classes", "10", "--opset", "18", "--json"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["opset"] == 18 and report["input_shape"] == [1, 3, 64, 64] and report["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: torch.randn(1, 3, 64, 64).numpy()})
    assert logits.shape == (1, 10)


def test_nas_export_writes_a_trials_architecture_as_onnx(results_study, tmp_path):
    url, study = results_study
    number = study.best_trials[0].number
    path = tmp_path / "trial.onnx"
    result = CliRunner().invoke(
        main, ["export", "--storage", url, "--trial", str(number), "--onnx", str(path), "--img-size", "32", "--num-classes", "10"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0 and f"-trial{number} written to {path}: ONNX opset 20" in result.output
    assert "spec:" not in result.output  # without -o the config is not printed over the message
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 32, 32] and session.get_outputs()[0].shape == [1, 10]
