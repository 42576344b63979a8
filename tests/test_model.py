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


def test_200_random_points_build_and_train_at_proxy_scale_with_finite_outputs():
    space = load_space("unified")
    rng = random.Random(0)
    for i in range(200):
        spec = space.sample(rng).scaled(0.25)
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
