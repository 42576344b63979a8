"""A user's own axis values: registered from outside the package, then written in a spec, drawn from a space
file, built, counted and searched like the seeds' values (DESIGN §1.4)."""

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml
from optuna.trial import TrialState
from timm.layers import trunc_normal_
from torch import nn

from nas.searcher import StudySearcher
from searchspace import NasError, build_model, count, load_space, measure, parse_macs, spec_from_data
from searchspace import cost
from searchspace.axes import KERNEL, PROJECTION, Connectivity, DynamicWeight, Option, register_connectivity, register_dynamic
from searchspace.layers import nchw, nhwc
from searchspace.mixer import TokenMixer
from searchspace.spec import MixerSpec, unregister
from trials import ProxyRecipe
from trials import record

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- a new connectivity: an atrous neighbourhood ------------------------------------------------------------
class Dilated(Connectivity):
    """A K x K neighbourhood whose taps lie `dilation` pixels apart (an atrous depth-wise convolution)."""

    name = "dilated"
    options = {"kernel": KERNEL, "dilation": Option(int, default=2, ge=1, le=8)}
    centred = True

    @classmethod
    def describe(cls, spec):
        return f"dilated {spec.kernel}x{spec.kernel} /{spec.dilation}"

    def build(self, mixer):
        super().build(mixer)
        mixer.static_bias = nn.Parameter(torch.zeros(self.dim))

    def cost(self):
        return super().cost() + cost.params(self.dim) + cost.macs(self.pixels * self.taps * self.dim)

    def _conv(self, mixer, x, gate):
        """One grouped conv over the batch folded into channels, with learned or per-sample filters."""
        v = self.dynamic.values(mixer, x, gate)
        b, h, w, c = v.shape
        k, d = self.kernel, self.spec.dilation
        filters = mixer.weight_norm(self.dynamic.filters(mixer, v), -1).expand(b, self.heads, k * k)
        filters = filters.repeat_interleave(c // self.heads, 1).reshape(b * c, 1, k, k)
        v = nchw(v).reshape(1, b * c, h, w)
        out = F.conv2d(v, filters, mixer.static_bias.repeat(b), padding=d * (k // 2), dilation=d, groups=b * c)
        return nhwc(out.view(b, c, h, w))

    kernels = {"static": _conv, "per_sample": _conv}


# --- a new dynamic weight: a static kernel gated per sample by squeeze-excitation -------------------------------
class Excited(DynamicWeight):
    """A learned K x K filter per group, scaled for each sample by a squeeze-excitation gate."""

    name = "excited"
    form = "per_sample"
    weight_norms = ("none",)
    options = {"projection": PROJECTION}

    def build(self, mixer):
        self.build_values(mixer)
        mixer.static_weight = nn.Parameter(trunc_normal_(torch.empty(self.connectivity.static_shape), std=0.02))
        hidden = max(1, self.dim // 4)
        mixer.excite = nn.Sequential(nn.Linear(self.dim, hidden), nn.ReLU(), nn.Linear(hidden, self.heads), nn.Sigmoid())

    def filters(self, mixer, v):
        return mixer.static_weight * mixer.excite(v.mean((1, 2)))[:, :, None]

    def cost(self):
        hidden = max(1, self.dim // 4)
        excite = cost.linear(self.dim, hidden, 1) + cost.linear(hidden, self.heads, 1)
        return self.values_cost() + cost.params(self.heads * self.connectivity.taps) + excite


@pytest.fixture(autouse=True, scope="module")
def registered():
    # for this module's tests only: the other test files assert the shipped values
    register_connectivity(Dilated)
    register_dynamic(Excited)
    yield
    unregister(Dilated)
    unregister(Excited)


OWN_SPACE = """
name: own
stages: 2
stage:
  depth: [1]
  dim: [16]
  ffn_ratio: [2.0]
mixer:
  connectivity: [sliding, dilated]
  dynamic: [static, homogeneous, excited]
  kernel: [3]
  dilation: [2, 3]
  head_dim: {by_dynamic: {static: [1], homogeneous: [4], excited: [4]}}
"""


def own_space(tmp_path):
    path = tmp_path / "own.yaml"
    path.write_text(OWN_SPACE)
    return load_space(path)


def stage(**mixer):
    return {"depth": 2, "dim": 32, "mixer": {"kernel": 3, **mixer}}


def test_own_values_are_written_in_specs_and_checked_with_the_rules_they_bring(tmp_path):
    spec = spec_from_data({"stages": [stage(connectivity="dilated", dynamic="excited", heads=8, dilation=3)]}, "mine.yaml")
    assert spec.stages[0].mixer.summary() == "dilated 3x3 /3, excited, 8 heads"
    assert spec_from_data(yaml.safe_load(spec.to_yaml()), "again").id == spec.id
    assert spec_from_data({"stages": [stage(connectivity="dilated", dynamic="static", heads=32)]}, "x").stages[0].mixer.dilation == 2
    refused = [
        (stage(connectivity="sliding", dynamic="static", heads=32, dilation=2), "dilation: applies only to connectivity 'dilated'"),
        (stage(connectivity="dilated", dynamic="attention", heads=4), "with 'dilated' use: static, homogeneous, excited"),
        (stage(connectivity="window", dynamic="excited", heads=4), "a per-sample kernel shared by all positions needs a sliding"),
        (stage(connectivity="dilated", dynamic="static", heads=32, dilation=9), "dilation: Input should be less than or equal to 8"),
        (stage(connectivity="dilated", dynamic="static", heads=32, kernel=4), "K must be odd"),
    ]
    for data, rule in refused:
        with pytest.raises(NasError, match=rule):
            spec_from_data({"stages": [data]}, "point.yaml")


def test_the_mixer_runs_the_registered_kernel_whose_taps_lie_dilation_pixels_apart():
    spec = MixerSpec(connectivity="dilated", dynamic="static", kernel=3, heads=4, dilation=3)
    mixer = TokenMixer(spec, 4, (9, 9), value_proj=False, out_dim=None)
    impulse = torch.zeros(1, 9, 9, 4)
    impulse[0, 4, 4] = 1.0
    with torch.no_grad():
        reached = (mixer(impulse) - mixer.static_bias).abs().sum(-1)[0].nonzero().tolist()
    assert sorted(reached) == [[4 + dy, 4 + dx] for dy in (-3, 0, 3) for dx in (-3, 0, 3)]


def test_own_values_are_drawn_from_a_space_file_and_counted_exactly(tmp_path):
    space = own_space(tmp_path)
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    specs = []

    def objective(trial):
        specs.append(space.suggest(trial))
        assert ("s1.mixer.dilation" in trial.params) == (trial.params["s1.mixer.connectivity"] == "dilated")
        return 0.0

    study.optimize(objective, n_trials=1000)  # the sampler stops the study once every point is drawn
    # a stage: sliding with 3 dynamic weights, dilated with 3 x 2 dilations
    assert len(specs) == len({s.id for s in specs}) == space.cardinality() == 9 * 9
    assert {(m.connectivity, m.dynamic) for s in specs for m in (st.mixer for st in s.stages)} >= {("dilated", "excited"), ("sliding", "excited")}
    assert all(space.contains(s) for s in specs)


@pytest.mark.parametrize("mixer", [
    {"connectivity": "dilated", "dynamic": "excited", "heads": 4, "dilation": 3},
    {"connectivity": "dilated", "dynamic": "static", "heads": 32},
    {"connectivity": "dilated", "dynamic": "homogeneous", "heads": 8},
    {"connectivity": "sliding", "dynamic": "excited", "heads": 4},
])
def test_own_values_build_and_their_closed_form_cost_equals_the_flop_counter(mixer):
    spec = spec_from_data({"stages": [stage(**mixer), {**stage(**mixer), "dim": 64}]}, "mine.yaml")
    model = build_model(spec, num_classes=10, img_size=64)
    measured, counted = measure(model, img_size=64), count(spec, img_size=64, num_classes=10)
    assert measured.params == counted.params and abs(measured.macs / counted.macs - 1) < 0.01
    y = model(torch.randn(2, 3, 64, 64))
    y.square().mean().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_search_suggests_own_values_within_the_budget(tmp_path):
    study = optuna.create_study(directions=list(record.DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=0))
    budget = parse_macs("40M")
    searcher = StudySearcher(study, own_space(tmp_path), budget, ProxyRecipe(epochs=1), 12)
    mixers = set()
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"epoch": 1, "proxy_top1": 50.0 + i, "proxy_loss": 1.0, "train_seconds": 1.0, "images_per_second": 10.0, "device": "cpu"})
        assert count(config["spec"]).macs <= budget
        mixers |= {(s["mixer"]["connectivity"], s["mixer"]["dynamic"]) for s in config["spec"]["stages"]}
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 12
    assert {c for c, _ in mixers} == {"sliding", "dilated"} and "excited" in {d for _, d in mixers}
