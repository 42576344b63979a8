"""Zero-cost proxies: NASWOT, synflow and grad-norm on untrained proxy networks, on synthetic images."""

import math

import pytest
import torch
from timm.loss import LabelSmoothingCrossEntropy

from searchspace import NasError, count, load_space, preset
from trials import ProxyData, ProxyRecipe, zero_cost_scores
from trials.train import normaliser, proxy_model
from trials.zero_cost import PROXIES, grad_norm, naswot, synflow, weights

RECIPE = ProxyRecipe()


def synthetic_data(seed=0, n=96, channels=1, classes=10) -> ProxyData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return ProxyData(images[:-16], labels[:-16], images[-16:], labels[-16:], classes, f"synthetic-{seed}")


def network(name="swin_t", data=None, seed=0):
    torch.manual_seed(seed)
    return proxy_model(preset(name), data or synthetic_data(), RECIPE)


def test_the_same_seed_gives_the_same_scores_and_another_seed_other_ones():
    data = synthetic_data()
    first = zero_cost_scores(preset("u_swin_micro"), data, RECIPE, batch_size=32, seed=0)
    assert zero_cost_scores(preset("u_swin_micro"), data, RECIPE, batch_size=32, seed=0) == first
    other = zero_cost_scores(preset("u_swin_micro"), data, RECIPE, batch_size=32, seed=1)
    assert all(other[p] != first[p] for p in PROXIES)


# one preset per kind of mixer: window attention, static / homogeneous / inhomogeneous sliding (BatchNorm
# networks), hadamard, parallel with interactions, deformable, halo, global reduced attention; and sampled points
PRESETS = ["swin_t", "dwnet_t", "ddwnet_t", "iddwnet_t", "elsa_swin_t", "mixformer_b1", "u_internimage_micro", "u_halonet_micro", "u_pvt_micro"]
SAMPLED = [f"tiny:{seed}" for seed in range(3)] + [f"unified:{seed}" for seed in range(5)]


@pytest.mark.parametrize("point", PRESETS + SAMPLED)
def test_every_proxy_scores_presets_and_sampled_points_finite_beside_the_full_size_cost(point):
    space, _, seed = point.partition(":")
    spec = load_space(space).sample(int(seed)) if seed else preset(point)
    scores = zero_cost_scores(spec, synthetic_data(channels=3), RECIPE, batch_size=16)
    assert all(math.isfinite(scores[p]) for p in PROXIES), scores
    assert scores["synflow"] > 0 and scores["grad_norm"] > 0
    params, macs = count(spec)
    assert (scores["params"], scores["macs"]) == (params, macs)


def test_naswot_scores_lower_the_less_a_network_tells_its_inputs_apart():
    data = synthetic_data()
    model = network(data=data)
    normalise = normaliser(data.train_images)
    images = data.train_images[:32]
    distinct = naswot(model, normalise(images))
    # the same image everywhere but a 4x4 patch: most units switch alike for all images
    alike = images[:1].repeat(32, 1, 1, 1)
    alike[:, :, 12:16, 12:16] = images[:, :, 12:16, 12:16]
    assert math.isfinite(distinct) and naswot(model, normalise(alike)) < distinct
    # identical images, or a network whose weights are all zero: every code is the same, K_H is singular
    assert naswot(model, normalise(images[:1].expand(32, -1, -1, -1))) == -math.inf
    with torch.no_grad():
        for weight in weights(model):
            weight.zero_()
    assert naswot(model, normalise(images)) == -math.inf


def test_synflow_uses_no_data_while_the_other_proxies_do():
    one = zero_cost_scores(preset("dwnet_t"), synthetic_data(seed=1), RECIPE, batch_size=32)
    other = zero_cost_scores(preset("dwnet_t"), synthetic_data(seed=2), RECIPE, batch_size=32)
    assert one["synflow"] == other["synflow"]
    assert one["naswot"] != other["naswot"] and one["grad_norm"] != other["grad_norm"]


@pytest.mark.parametrize("name", ["swin_t", "dwnet_t"])
def test_synflow_sees_weight_magnitudes_not_signs_and_leaves_the_network_untouched(name):
    model = network(name)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    score = synflow(model, (1, 28, 28))
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())  # it scored a copy
    with torch.no_grad():
        model.stages[0].blocks[0].ffn.fc1.weight.neg_()  # a hidden layer before an activation
    assert synflow(model, (1, 28, 28)) == score
    # R = 1'|W_fc| f: scaling the last layer by 3 scales every weight's theta * dR/dtheta by 3
    with torch.no_grad():
        model.head.fc.weight.mul_(3)
    assert synflow(model, (1, 28, 28)) == pytest.approx(3 * score, rel=1e-6)  # 3w rounds in float32


def test_grad_norm_with_the_classifier_zeroed_is_the_norm_of_the_classifiers_own_gradient():
    # zero logits whatever the input: the loss cannot reach the backbone, only W_fc gets a gradient,
    # dL/dW_fc = (softmax(0) - smoothed targets)' features / B
    data = synthetic_data()
    model = network(data=data)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
    images, labels = normaliser(data.train_images)(data.train_images[:32]), data.train_labels[:32]
    score = grad_norm(model, images, labels, LabelSmoothingCrossEntropy(0.1))
    with torch.no_grad():
        features = model.head.pre_logits(model.head.norm(model.forward_features(images))).mean((1, 2))
    targets = torch.full((32, 10), 0.1 / 10).scatter_add_(1, labels[:, None], torch.full((32, 1), 0.9))
    expected = ((torch.full((32, 10), 1 / 10) - targets).T @ features / 32).norm().item()
    assert score == pytest.approx(expected, rel=1e-4)


def test_a_proxy_that_fails_or_overflows_scores_nan_and_the_others_still_run(monkeypatch):
    import trials.zero_cost as zero_cost

    def fails(*args):
        raise RuntimeError("the kernel has no float64 implementation")

    monkeypatch.setattr(zero_cost, "synflow", fails)
    monkeypatch.setattr(zero_cost, "grad_norm", lambda *args: math.inf)
    with pytest.warns(RuntimeWarning) as caught:
        scores = zero_cost_scores(preset("u_swin_micro"), synthetic_data(), RECIPE, batch_size=16)
    assert math.isnan(scores["synflow"]) and math.isnan(scores["grad_norm"]) and math.isfinite(scores["naswot"])
    messages = " ".join(str(w.message) for w in caught)
    assert "no float64 implementation" in messages and "grad_norm gave inf" in messages


def test_an_unknown_proxy_is_refused_with_the_known_names():
    with pytest.raises(NasError, match="unknown zero-cost proxy snip; choose from naswot, synflow, grad_norm"):
        zero_cost_scores(preset("swin_t"), synthetic_data(), RECIPE, proxies=("naswot", "snip"))
