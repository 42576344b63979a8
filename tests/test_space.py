"""Space files: sampling Optuna can steer, exact cardinality, membership, and clear errors."""

import random

import optuna
import pytest
import yaml

from searchspace import NasError, count, load_space, parse_macs, preset
from searchspace.space import SPACE_DIR, Choice
from searchspace.spec import MixerSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Two stages of one block, window or sliding, static or attention: 4 mixers a stage, 16 points.
SMALL = {
    "stages": 2,
    "stage": {"depth": [1], "dim": [16]},
    "mixer": {
        "connectivity": ["window", "sliding"],
        "dynamic": ["static", "attention"],
        "kernel": {"by_connectivity": {"window": [4], "sliding": [3]}},
        "head_dim": {"by_dynamic": {"static": [1], "attention": [8]}},
    },
}


def small_space(tmp_path, same_for_all_stages=(), **mixer):
    data = {**SMALL, "mixer": {**SMALL["mixer"], **mixer}, "same_for_all_stages": list(same_for_all_stages)}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_space(path)


def enumerate_by_optuna(space) -> tuple[list[str], list[dict]]:
    """Every point, once, as Optuna's brute-force sampler walks the named dimensions (ids, params)."""
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    ids = []

    def objective(trial):
        ids.append(space.suggest(trial).id)
        return 0.0

    study.optimize(objective, n_trials=1000)  # the sampler stops the study once every point is drawn
    return ids, [t.params for t in study.trials]


def test_tiny_space_cardinality_equals_an_exhaustive_enumeration_by_optuna():
    space = load_space("tiny")
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    ids = []

    def objective(trial):
        ids.append(space.suggest(trial).id)
        return 0.0

    study.optimize(objective, n_trials=10 * space.cardinality())
    assert len(ids) == len(set(ids)) == space.cardinality() == 128


def test_a_shared_keyed_head_dim_is_one_value_per_key_and_counted_exactly(tmp_path):
    space = small_space(tmp_path, ["mixer.head_dim"], head_dim={"by_dynamic": {"static": [1, 2], "attention": [8, 16]}})
    ids, params = enumerate_by_optuna(space)
    # 4 stage pairs use only static (x2 head_dims), 4 only attention (x2), 8 both (x2 x2)
    assert len(ids) == len(set(ids)) == space.cardinality() == 4 * 2 + 4 * 2 + 8 * 4
    assert {"all.mixer.head_dim@static", "all.mixer.head_dim@attention"} <= set().union(*params)
    assert ("mixer.head_dim (all stages)", "static: 1, 2; attention: 8, 16 (by dynamic)") in space.dimensions()


def test_weight_norm_keyed_by_connectivity_is_named_by_connectivity_and_dynamic(tmp_path):
    space = small_space(
        tmp_path,
        dynamic=["static", "inhomogeneous", "attention"],
        head_dim={"by_dynamic": {"static": [1], "inhomogeneous": [8], "attention": [8]}},
        weight_norm={"by_connectivity": {"window": ["none", "softmax"], "sliding": ["none", "filter_norm", "softmax"]}},
    )
    ids, params = enumerate_by_optuna(space)
    # a stage: window 1 + 2 + 1 mixers, sliding 1 + 3 + 1
    assert len(ids) == len(set(ids)) == space.cardinality() == 9 * 9
    names = set().union(*params)
    assert {"s1.mixer.weight_norm@window/inhomogeneous", "s1.mixer.weight_norm@sliding/inhomogeneous"} <= names


def test_a_keyed_dimension_that_leaves_a_key_out_draws_the_default_there(tmp_path):
    space = small_space(
        tmp_path, projection={"by_connectivity": {"sliding": ["conv_bn"]}}, weight_norm={"by_dynamic": {"attention": ["softmax"]}}
    )
    rng = random.Random(0)
    for spec in (space.sample(rng) for _ in range(20)):
        assert space.contains(spec)
        for stage in spec.stages:
            m = stage.mixer
            # projection applies to static weights only, here conv_bn for sliding and the default for window
            expected = {("sliding", "static"): "conv_bn", ("window", "static"): "linear"}
            assert m.projection == expected.get((m.connectivity, m.dynamic))
            assert m.weight_norm == ("softmax" if m.dynamic == "attention" else "none")


def test_dynamic_keyed_by_connectivity_samples_enumerates_counts_and_replays(tmp_path):
    space = small_space(tmp_path, dynamic={"by_connectivity": {"window": ["attention"], "sliding": ["static", "attention"]}})
    ids, params = enumerate_by_optuna(space)
    assert len(ids) == len(set(ids)) == space.cardinality() == 3 * 3
    assert all(p["s1.mixer.dynamic@" + p["s1.mixer.connectivity"]] for p in params)
    rng = random.Random(0)
    specs = [space.sample(rng) for _ in range(20)]
    assert all(space.contains(s) for s in specs) and {s.id for s in specs} <= set(ids)
    assert space.params_of(specs[0]) == next(p for i, p in zip(ids, params) if i == specs[0].id)
    assert space.cheapest()[0].id in ids
    assert ("mixer.dynamic", "window: attention; sliding: static, attention (by connectivity)") in space.dimensions()
    window_static = specs[0].model_copy(deep=True)
    for stage in window_static.stages:
        stage.mixer = MixerSpec.model_validate({"connectivity": "window", "dynamic": "static", "heads": 16, "kernel": 4})
    assert space.why_not(window_static) == "s1.mixer.dynamic@window: static is not among attention"


def test_a_choice_of_booleans_holds_no_numbers_and_a_choice_of_numbers_no_booleans():
    assert True in Choice((True,)) and 1.0 in Choice((1,)) and None in Choice((None, 2))
    assert 1 not in Choice((True,)) and 0.0 not in Choice((False,)) and True not in Choice((1,)) and False not in Choice((0,))


def test_a_boolean_dimension_replays_booleans_only(tmp_path):
    path = tmp_path / "flags.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "stage": {**SMALL["stage"], "ffn_se": [True], "ffn_local": [1]}}))
    space = load_space(path)
    spec = space.sample(0)
    assert space.contains(spec) and spec.stages[0].ffn_se is True and spec.stages[0].ffn_local == 1
    off = spec.model_copy(deep=True)
    off.stages[0].ffn_se = False
    assert space.why_not(off) == "s1.ffn_se: False is not among true"


def test_suggest_names_the_real_dimensions_and_draws_conditional_ones_only_where_they_apply():
    space = load_space("unified")
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(40):
        trial = study.ask()
        spec = space.suggest(trial)
        params = trial.params
        assert {"stem", "s1.depth", "s1.dim", "s1.mixer.connectivity"} <= set(params)
        for i, stage in enumerate(spec.stages, 1):
            c = stage.mixer.connectivity
            assert params[f"s{i}.mixer.connectivity"] == c
            assert params[f"s{i}.mixer.dynamic@{c}"] == stage.mixer.dynamic
            assert (f"s{i}.mixer.halo" in params) == (c == "halo")
            assert (f"s{i}.mixer.reduction" in params) == (c == "global")
            assert (f"s{i}.second.connectivity" in params) == (stage.layout != "single")
        study.tell(trial, [0.0, float(count(spec).macs)])


def test_shared_dimension_is_one_parameter_for_all_stages():
    space = load_space("tiny")
    trial = optuna.create_study().ask()
    spec = space.suggest(trial)
    assert "all.mixer.connectivity" in trial.params
    assert len({s.mixer.connectivity for s in spec.stages}) == 1


def test_sampled_points_are_contained_and_presets_outside_say_why():
    space = load_space("unified")
    rng = random.Random(1)
    assert all(space.contains(space.sample(rng)) for _ in range(100))
    assert space.contains(preset("swin_t")) and space.contains(preset("u_halonet_micro"))
    assert "ffn_ratio: 8.0 is not among 2.0, 3.0, 4.0" in space.why_not(preset("u_pvt_micro"))


def test_sample_within_budget_respects_it_and_refuses_an_impossible_one():
    space = load_space("unified")
    budget = parse_macs("1G")
    specs = space.sample_within(budget, 5, seed=0)
    assert len(specs) == 5 and all(count(s).macs <= budget for s in specs)
    with pytest.raises(NasError, match=r"the cheapest needs 0\.12G"):
        space.sample_within(parse_macs("10M"), 1, seed=0)


def test_cheapest_point_is_cheaper_than_every_sample():
    space = load_space("unified")
    _, cheapest = space.cheapest()
    rng = random.Random(2)
    assert all(count(space.sample(rng)).macs >= cheapest.macs for _ in range(200))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["mixer"].update(connectivity=["window", "windowz"]), "mixer.connectivity: 'windowz' is not allowed (allowed: 'window', 'halo'"),
        (lambda d: d["mixer"].update(kernal=[3]), "mixer.kernal: unknown dimension (allowed: connectivity, dynamic, kernel"),
        (lambda d: d.update(optimiser="adam"), "optimiser: unknown key (allowed: name, description, stages"),
        (lambda d: d["stage"].update(ffn_ratio=[]), "stage.ffn_ratio: empty list of choices"),
        (lambda d: d["stage"].update(depth={"low": 0, "high": 3}), "stage.depth: 0: Input should be greater than or equal to 1"),
        (lambda d: d["stage"].update(depth={"low": 3, "high": 1}), "stage.depth: empty range 3..1"),
        (lambda d: d["stage"].update(dim=[[32], [64]]), "stage.dim: 2 per-stage domains for 4 stages"),
        (lambda d: d["mixer"].update(connectivity=["halo"], dynamic=["static"]), "connectivity 'halo' admits dynamic attention, but mixer.dynamic allows only static"),
        (lambda d: d["mixer"].update(kernel=[4]), "mixer.kernel: 4 cannot serve connectivity 'sliding'"),
        (lambda d: d["mixer"].update(head_dim=[24]), "mixer.head_dim: 24 does not divide stage 1's width 16"),
        (lambda d: d.update(same_for_all_stages=["mixer.kernel"]), "'mixer.kernel' cannot be shared"),
        (lambda d: d["mixer"].update(head_dim={"by_dynamic": {"static": [1]}}), "mixer.head_dim: no values for a window/attention mixer"),
        (lambda d: d["mixer"].update(kernel={"by_connectivity": {"window": [4]}}), "mixer.kernel: no values for connectivity 'sliding'"),
        (lambda d: d["mixer"].update(connectivity={"by_dynamic": {"static": ["window"]}}), "mixer.connectivity: cannot be keyed by_dynamic, it is itself a key (allowed: a list of choices)"),
        (lambda d: d["mixer"].update(dynamic={"by_dynamic": {"static": ["static"]}}), "mixer.dynamic: cannot be keyed by_dynamic, it is itself a key (allowed: a list of choices or by_connectivity)"),
        (lambda d: d["mixer"].update(dynamic={"by_connectivity": {"window": ["static"]}}), "mixer.dynamic: no values for connectivity 'sliding', which the space allows"),
        (lambda d: d["mixer"].update(dynamic={"by_connectivity": {"window": ["static"], "sliding": ["hadamard"]}}), "mixer.head_dim: no values for a sliding/hadamard mixer"),
        (lambda d: d["mixer"].update(connectivity=["halo", "window"], dynamic=[["static"], ["attention"], ["attention"], ["attention"]]), "connectivity 'halo' admits dynamic attention, but mixer.dynamic allows only static in stage 1"),
        (lambda d: d.update(same_for_all_stages=["mixer.head_dim"]) or d["mixer"].update(head_dim={"by_dynamic": {"static": [[1], [1], [1], [1]], "attention": [8]}}), "'mixer.head_dim' has per-stage domains"),
        (lambda d: d["stage"].update(ffn_se=[1]), "stage.ffn_se: 1: Input should be a valid boolean"),
        (lambda d: d["stage"].update(ffn_local=[True]), "stage.ffn_local: True: Input should be a valid integer"),
        (lambda d: d["mixer"].update(shift=["yes"]), "mixer.shift: 'yes': Input should be a valid boolean"),
    ],
)
def test_bad_space_files_name_the_file_the_key_and_the_allowed_values(tmp_path, edit, message):
    data = yaml.safe_load((SPACE_DIR / "tiny.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(NasError) as err:
        load_space(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_missing_space_file_lists_the_shipped_spaces():
    with pytest.raises(NasError, match="no such space file .*shipped spaces: tiny, unified"):
        load_space("nowhere.yaml")


@pytest.mark.parametrize("text, macs", [("4.5G", 4_500_000_000), ("800M", 800_000_000), ("4500000000", 4_500_000_000), ("4.5e9", 4_500_000_000), ("4.5 GMACs", 4_500_000_000)])
def test_budget_parses_the_usual_forms(text, macs):
    assert parse_macs(text) == macs


@pytest.mark.parametrize("text", ["abc", "-1", "0", "4.5X", "", "G"])
def test_budget_rejects_anything_else(text):
    with pytest.raises(NasError, match="budget"):
        parse_macs(text)
