"""The architecture spec: canonical YAML, stable ids, and errors that name the file, key and allowed values."""

import pytest
import yaml

from searchspace import ArchSpec, NasError, load_space, load_spec, preset, preset_names
from searchspace import spec_from_data

SWIN_STAGE = {"depth": 2, "dim": 96, "mixer": {"connectivity": "window", "dynamic": "attention", "kernel": 7, "heads": 3}}


def write(tmp_path, data, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("name", preset_names())
def test_yaml_to_spec_to_yaml_is_identical(name, tmp_path):
    text = preset(name).to_yaml()
    again = load_spec(str(write(tmp_path, text))).to_yaml()
    assert again == text


def test_sampled_points_round_trip_through_yaml_and_json(tmp_path):
    space = load_space("unified")
    for seed in range(20):
        spec = space.sample(seed)
        assert load_spec(str(write(tmp_path, spec.to_yaml()))).to_yaml() == spec.to_yaml()
        assert load_spec(str(write(tmp_path, spec.to_json(), "spec.json"))).id == spec.id


def test_ids_are_stable_across_releases():
    # Studies store these ids. Version 2 (canonical forms: settings that change nothing do not count) changed
    # swin_t's, whose stage-4 shift does nothing; the searcher matches stored trials by their stored spec.
    assert preset("swin_t").id == "c33964999f"
    assert preset("u_halonet_micro").id == "eaf62b6310"


def with_mixer(spec, stage, **changes):
    data = spec.to_dict()
    data["stages"][stage]["mixer"].update(changes)
    return ArchSpec.model_validate(data)


def test_settings_that_change_nothing_keep_the_id_and_those_that_change_the_network_do_not():
    swin = preset("swin_t")
    assert with_mixer(swin, 3, shift=False).id == swin.id  # stage 4's 7x7 window covers its 7x7 map
    assert with_mixer(swin, 3, kernel=9).id == swin.id  # a window larger than the map is the map
    assert with_mixer(swin, 2, shift=False).id != swin.id  # stage 3's map is 14x14: the shift matters
    mlp = preset("localmlp_t")
    assert with_mixer(mlp, 3, shared_positions=True).id == mlp.id  # one window: one bank of weights either way
    assert with_mixer(mlp, 2, shared_positions=True).id != mlp.id
    single = ArchSpec.model_validate({"stages": [dict(SWIN_STAGE, depth=1, mixer=dict(SWIN_STAGE["mixer"], shift=True))]})
    assert single.id == ArchSpec.model_validate({"stages": [dict(SWIN_STAGE, depth=1)]}).id  # no second block to shift


def test_the_id_at_a_proxy_geometry_merges_what_the_proxy_cannot_tell_apart():
    swin = preset("swin_t")
    unshifted = with_mixer(swin, 1, shift=False)  # stage 2: 28x28 at 224, 7x7 at 28 px with stem stride 2
    assert unshifted.id != swin.id
    assert unshifted.id_at(28, 2) == swin.id_at(28, 2)


def test_id_ignores_name_and_notes_but_not_the_architecture():
    base = preset("swin_t").to_dict()
    renamed = dict(base, name="mine", notes="same network")
    assert ArchSpec.model_validate(renamed).id == preset("swin_t").id
    wider = dict(base, stages=[dict(base["stages"][0], dim=192, mixer=dict(base["stages"][0]["mixer"], heads=6))] + base["stages"][1:])
    assert ArchSpec.model_validate(wider).id != preset("swin_t").id


def test_defaults_are_filled_so_equal_networks_get_equal_ids():
    short = ArchSpec.model_validate({"stages": [SWIN_STAGE]})
    explicit = ArchSpec.model_validate(
        {"stem": "patch", "stages": [dict(SWIN_STAGE, topology="transformer", mixer=dict(SWIN_STAGE["mixer"], shift=False, rel_pos=True))]}
    )
    assert short.id == explicit.id
    assert short.stages[0].mixer.weight_norm == "softmax"


def test_unknown_key_names_file_key_path_and_allowed_keys(tmp_path):
    stage = dict(SWIN_STAGE, mixer=dict(SWIN_STAGE["mixer"], windw=7))
    path = write(tmp_path, {"stages": [stage]})
    with pytest.raises(NasError) as err:
        load_spec(str(path))
    msg = str(err.value)
    assert str(path) in msg and "stages[0].mixer.windw" in msg and "connectivity, dynamic, heads, kernel" in msg
    assert "\n" not in msg


def test_unknown_value_lists_the_allowed_values(tmp_path):
    stage = dict(SWIN_STAGE, mixer=dict(SWIN_STAGE["mixer"], connectivity="windowed"))
    with pytest.raises(NasError, match=r"stages\[0\]\.mixer\.connectivity: 'windowed' is not allowed \(allowed: 'window', 'halo', 'sliding', 'global' or 'deformable'\)"):
        load_spec(str(write(tmp_path, {"stages": [stage]})))


@pytest.mark.parametrize(
    "mixer, rule",
    [
        ({"connectivity": "global", "dynamic": "static", "heads": 3}, "tie the network to one input size"),
        ({"connectivity": "halo", "dynamic": "inhomogeneous", "heads": 3, "kernel": 7}, "with 'halo' use: attention"),
        ({"connectivity": "window", "dynamic": "attention", "heads": 3, "kernel": 7, "halo": 3}, "halo: applies only to connectivity 'halo'"),
        ({"connectivity": "sliding", "dynamic": "static", "heads": 96, "kernel": 4}, "K must be odd"),
        ({"connectivity": "window", "dynamic": "attention", "heads": 5, "kernel": 7}, "5 heads do not divide the mixer's 96 channels"),
        ({"connectivity": "sliding", "dynamic": "attention", "heads": 3, "kernel": 7, "weight_norm": "none"}, "does not apply to dynamic 'attention'"),
        ({"connectivity": "window", "dynamic": "attention", "heads": 3}, "kernel: is required"),
    ],
)
def test_invalid_combination_names_the_rule_it_breaks(mixer, rule):
    with pytest.raises(NasError) as err:
        spec_from_data({"stages": [dict(SWIN_STAGE, mixer=mixer)]}, "point.yaml")
    assert rule in str(err.value) and str(err.value).startswith("point.yaml: stages[0].mixer")


def test_second_mixer_only_under_serial_or_parallel():
    stage = dict(SWIN_STAGE, second_mixer=SWIN_STAGE["mixer"])
    with pytest.raises(NasError, match="second_mixer: applies only to layouts 'serial' and 'parallel'"):
        spec_from_data({"stages": [stage]}, "x")
    with pytest.raises(NasError, match="layout 'parallel' needs a second mixer"):
        spec_from_data({"stages": [dict(SWIN_STAGE, layout="parallel")]}, "x")


def test_malformed_yaml_names_line_and_column(tmp_path):
    path = write(tmp_path, "stages:\n  - depth: 2\n    dim: [96\n")
    with pytest.raises(NasError, match=rf"{path}:\d+:\d+: malformed YAML"):
        load_spec(str(path))


def test_unknown_architecture_lists_the_presets():
    with pytest.raises(NasError, match="neither a preset .*swin_t.* nor a spec file"):
        load_spec("swin_tiny")


def test_yaml_is_read_safely_without_constructing_objects(tmp_path):
    path = write(tmp_path, "!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(NasError, match="malformed YAML"):
        load_spec(str(path))


@pytest.mark.parametrize("name", preset_names())
@pytest.mark.parametrize("width", [0.25, 0.5])
def test_width_scaled_presets_keep_their_head_counts_and_depthwise_stays_depthwise(name, width):
    spec = preset(name)
    scaled = spec.scaled(width)
    for old, new in zip(spec.stages, scaled.stages):
        assert new.dim <= old.dim
        for (_, m_old, w_old), (_, m_new, w_new) in zip(old.mixer_widths(), new.mixer_widths()):
            if m_old.heads == w_old:
                assert m_new.heads == w_new
            else:
                assert m_new.heads == m_old.heads


def test_head_ratio_and_head_width_together_are_refused_naming_the_rule():
    with pytest.raises(NasError) as err:
        spec_from_data({"head_ratio": 5.0, "head_width": 1280, "stages": [SWIN_STAGE]}, "point.yaml")
    assert str(err.value) == "point.yaml: head_width: give the pre-logits width either as head_width or as head_ratio, not both"


def test_an_absolute_head_width_is_scaled_with_the_network_by_the_proxy_recipe():
    mixformer = preset("mixformer_b1")
    assert mixformer.head_width == 1280 and not mixformer.head_ratio
    for width in (0.25, 0.5):  # what head_ratio 5 of the scaled last stage gave before
        scaled = mixformer.scaled(width)
        assert scaled.head_width == 5 * scaled.stages[-1].dim == 1280 * width
