"""Builder and cost: presets reproduce the papers, the closed form agrees with FlopCounterMode,
and every point of the space builds and trains at proxy scale."""

import random

import pytest
import timm
import torch

from searchspace import TOLERANCE, ArchSpec, build_model, count, load_space, measure, preset, preset_names, published


@pytest.mark.parametrize("name", preset_names())
def test_preset_reproduces_its_published_params_and_macs(name):
    params, macs = count(preset(name))
    ref = published(name)
    assert abs(params / (ref["params_m"] * 1e6) - 1) <= TOLERANCE["params"]
    assert abs(macs / (ref["macs_g"] * 1e9) - 1) <= TOLERANCE["macs"]


@pytest.mark.parametrize("name", preset_names())
def test_closed_form_cost_equals_flop_counter_on_the_built_preset(name):
    measured = measure(build_model(name))
    counted = count(name)
    assert measured.params == counted.params
    assert abs(measured.macs / counted.macs - 1) < 0.01


def test_swin_t_matches_timm_swin_tiny_under_the_same_counter():
    ours = measure(build_model("swin_t"))
    theirs = measure(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False))
    assert abs(ours.params / theirs.params - 1) < 0.01
    assert abs(ours.macs / theirs.macs - 1) < 0.02


def test_flop_counter_cross_check_counts_fused_attention_that_torch_leaves_out():
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model("u_swin_micro").eval()
    x = torch.randn(1, 3, 224, 224)
    plain = FlopCounterMode(display=False)
    with plain, torch.no_grad():
        model(x)
    assert measure(model).macs - plain.get_total_flops() // 2 > 20_000_000  # the q.k and attn.v products


@pytest.mark.parametrize("seed", range(3))
def test_closed_form_cost_equals_flop_counter_on_sampled_points(seed):
    space = load_space("unified")
    rng = random.Random(seed)
    for _ in range(8):
        spec = space.sample(rng).scaled(0.5)
        for img_size in (96, 128):
            measured = measure(build_model(spec, img_size=img_size), img_size=img_size)
            counted = count(spec, img_size=img_size)
            assert measured.params == counted.params, spec.id
            assert abs(measured.macs / counted.macs - 1) < 0.01, spec.id


@pytest.mark.parametrize("chunk", range(4))
def test_200_random_points_build_and_train_at_proxy_scale_with_finite_outputs(chunk):
    """200 seeded points in 4 chunks of 50 (so parallel test workers share them)."""
    space = load_space("unified")
    rng = random.Random(0)
    points = [space.sample(rng) for _ in range(200)]
    for i in range(50 * chunk, 50 * (chunk + 1)):
        spec = points[i].scaled(0.25)
        stem_stride = 1 if i % 5 == 0 else 4  # every fifth at the proxy recipe's full-proportion maps
        model = build_model(spec, num_classes=10, img_size=32, in_chans=1, stem_stride=stem_stride)
        y = model(torch.randn(2, 1, 32, 32))
        y.square().mean().backward()
        assert y.shape == (2, 10) and torch.isfinite(y).all(), spec.id
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), spec.id


@pytest.mark.parametrize("name", preset_names())
def test_presets_run_at_other_input_sizes_than_they_were_built_for(name):
    model = build_model(name, num_classes=5).eval()
    with torch.no_grad():
        for size in (160, 100):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


@pytest.mark.parametrize("name", ["swin_t", "elsa_swin_t", "u_halonet_micro", "u_internimage_micro", "mixformer_b1"])
def test_presets_run_in_bfloat16(name):
    model = build_model(name, num_classes=10, img_size=64).to(torch.bfloat16).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 64, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_drop_path_and_num_classes_reach_the_network():
    model = build_model("swin_t", num_classes=7, drop_path=0.2)
    rates = [m.drop_prob for m in model.modules() if m.__class__.__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2) and model.head.fc.out_features == 7


def test_elsas_generator_group_width_is_a_spec_field():
    # ELSA-Swin-S uses the authors' default group width 8; ELSA-Swin-T's preset uses 4.
    data = preset("elsa_swin_t").to_dict()
    assert data["stages"][0]["mixer"]["group_width"] == 4
    for stage in data["stages"][:3]:
        stage["mixer"]["group_width"] = 8
    wider_groups = ArchSpec.model_validate(data)
    assert wider_groups.id != preset("elsa_swin_t").id
    assert count(wider_groups).params > count(preset("elsa_swin_t")).params  # each filter sees 8 channels, not 4
    assert measure(build_model(wider_groups)) == count(wider_groups)
# --- timm's model API: what timm's training scripts and detection / segmentation necks call ----------------
def stage_dims(name):
    return [s.dim for s in preset(name).stages]


@pytest.mark.parametrize("name, pre_logits_width", [("swin_t", 768), ("mixformer_b1", 1280), ("u_swin_micro", 384)])
def test_forward_features_gives_the_last_map_and_forward_head_the_pre_logits_width(name, pre_logits_width):
    model = build_model(name, num_classes=10, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, *model.pretrained_cfg["pool_size"], model.num_features)  # NHWC, as timm's Swin
        assert model.num_features == stage_dims(name)[-1]
        assert model.forward_head(features, pre_logits=True).shape == (2, pre_logits_width) == (2, model.head_hidden_size)
        torch.testing.assert_close(model.forward_head(features), model(x))


@pytest.mark.parametrize("name", ["swin_t", "mixformer_b1"])
def test_reset_classifier_removes_and_replaces_the_classifier_any_number_of_times(name):
    model = build_model(name, num_classes=0, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(x).shape == (2, model.head_hidden_size)
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.get_classifier().out_features == 5 and model(x).shape == (2, 5)
    model.reset_classifier(0, global_pool="")
    assert model(x).shape == (2, 2, 2, model.head_hidden_size)  # unpooled, channels-last like timm's Swin
    model.reset_classifier(3, global_pool="catavgmax")
    assert model.head_hidden_size == 2 * (1280 if name == "mixformer_b1" else model.num_features)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.head_hidden_size)
    assert model(x).shape == (2, 3)


def test_global_pool_and_drop_rate_reach_the_head():
    model = build_model("swin_t", num_classes=10, img_size=64, global_pool="max", drop_rate=0.5)
    features = model.forward_features(torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        pooled = model.eval().forward_head(features, pre_logits=True)
        torch.testing.assert_close(pooled, model.head.norm(features).amax((1, 2)))
        dropped = model.train().forward_head(features, pre_logits=True)
    assert 0.3 < (dropped == 0).float().mean() < 0.7
    torch.testing.assert_close(dropped[dropped != 0], 2 * pooled[dropped != 0])


@pytest.mark.parametrize("name, out_indices", [("mixformer_b1", (1, 3)), ("u_pvt_micro", None), ("swin_t", (0,))])
def test_features_only_backbone_gives_nchw_maps_with_the_channels_and_reductions_of_feature_info(name, out_indices):
    full = build_model(name).eval()
    backbone = build_model(name, features_only=True, **({"out_indices": out_indices} if out_indices else {})).eval()
    taken = out_indices or range(len(stage_dims(name)))
    assert backbone.feature_info.channels() == [stage_dims(name)[i] for i in taken]
    assert backbone.feature_info.reduction() == [4 * 2**i for i in taken]
    assert not any(".head." in k for k in backbone.state_dict())  # pruned: no head, no stage after the last taken
    assert all(int(k.split(".")[2]) <= max(taken) for k in backbone.state_dict() if k.startswith("model.stages."))
    backbone.load_state_dict({f"model.{k}": v for k, v in full.state_dict().items() if f"model.{k}" in backbone.state_dict()})
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        maps = backbone(x)
        _, stage_maps = full.forward_intermediates(x)
    assert [m.shape for m in maps] == [(2, c, 128 // r, 128 // r) for c, r in zip(backbone.feature_info.channels(), backbone.feature_info.reduction())]
    for got, i in zip(maps, taken):
        torch.testing.assert_close(got, stage_maps[i])


def test_forward_intermediates_gives_every_stage_and_the_features_the_head_takes():
    model = build_model("mixformer_b1", num_classes=10).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert [m.shape for m in maps] == [(2, c, 96 // r, 96 // r) for c, r in zip(stage_dims("mixformer_b1"), (4, 8, 16, 32))]
        torch.testing.assert_close(maps[-1], final.permute(0, 3, 1, 2))
        torch.testing.assert_close(model.forward_head(final), model(x))
        first_two = model.forward_intermediates(x, indices=[0, 1], stop_early=True, intermediates_only=True)
    torch.testing.assert_close(first_two, maps[:2])


def test_head_width_sets_the_pre_logits_width_in_channels_and_mixformer_builds_as_with_head_ratio():
    spec = preset("mixformer_b1").to_dict()
    as_before = {k: v for k, v in spec.items() if k != "head_width"} | {"head_ratio": 5.0}  # 1280 = 5 x 256
    ours, before = build_model(spec), build_model(as_before)
    assert spec["head_width"] == 1280 and ours.head_hidden_size == before.head_hidden_size == 1280
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in before.state_dict().items()}
    assert count(spec) == count(as_before)
    swin = preset("swin_t").to_dict() | {"head_width": 1000}
    model = build_model(swin, num_classes=10, img_size=64)
    measured, counted = measure(model, img_size=64), count(swin, img_size=64, num_classes=10)
    assert model.head_hidden_size == 1000 and measured.params == counted.params
    assert abs(measured.macs / counted.macs - 1) < 0.01
