"""Space files: sampling Optuna can steer, exact cardinality, membership, and clear errors."""

import random

import optuna
import pytest
import yaml

from searchspace import NasError, count, load_space, parse_macs, preset
from searchspace.space import SPACE_DIR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_tiny_space_cardinality_equals_an_exhaustive_enumeration_by_optuna():
    space = load_space("tiny")
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    ids = []

    def objective(trial):
        ids.append(space.suggest(trial).id)
        return 0.0

    study.optimize(objective, n_trials=10 * space.cardinality())
    assert len(ids) == len(set(ids)) == space.cardinality() == 128


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
