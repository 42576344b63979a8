"""Proxy data and proxy training: the default data, the three folder layouts and their test splits (one held-out
set for every seed), determinism, evaluations where they decide, failures (divergence, collapse)."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from datalib import write_idx
from searchspace import NasError, load_space, preset
from trials import ProxyData, ProxyRecipe, TrialFailed, failure_reason, load_proxy_data, train_proxy
from trials.train import at_chance

@pytest.fixture
def default_data(monkeypatch, proxy_data_dir):
    """The default data source: Debian's package, or where it is missing its stand-in in the same place."""
    import trials.data

    monkeypatch.setattr(trials.data, "DEBIAN_FASHION_MNIST", proxy_data_dir)
    return None


def test_the_default_data_is_debians_fashion_mnist_resized_and_split_by_seed(default_data):
    data = load_proxy_data(None, 28, 300, 100, seed=1)
    assert data.train_images.shape == (300, 1, 28, 28) and data.val_images.shape == (100, 1, 28, 28)
    assert data.num_classes == 10 and data.name == "fashion-mnist" and data.held_out_from == "test split"
    again = load_proxy_data(None, 28, 300, 100, seed=1)
    assert torch.equal(data.train_labels, again.train_labels)
    other = load_proxy_data(None, 28, 300, 100, seed=2)
    assert not torch.equal(data.train_labels, other.train_labels)


def test_every_seed_is_scored_on_the_same_held_out_images_of_the_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    write_idx(tmp_path, rng.integers(0, 100, (60, 12, 12)), rng.integers(0, 3, 60))
    write_idx(tmp_path, rng.integers(150, 255, (40, 12, 12)), rng.integers(0, 3, 40), split="t10k")  # brighter: told apart
    seeds = [load_proxy_data(str(tmp_path), 12, 30, 20, seed=s) for s in (0, 1, 7)]
    assert all(torch.equal(d.val_images, seeds[0].val_images) and torch.equal(d.val_labels, seeds[0].val_labels) for d in seeds)
    assert seeds[0].val_images.min() >= 150 and seeds[0].train_images.max() < 100  # held out from t10k, never trained on
    assert not torch.equal(seeds[0].train_images, seeds[1].train_images)
    assert "from its test split" in seeds[0].describe()
    with pytest.raises(NasError, match="40 usable images in its test split, fewer than the 50 held-out images the proxy recipe asks for; lower --held-out"):
        load_proxy_data(str(tmp_path), 12, 30, 50, seed=0)
    legacy = [load_proxy_data(str(tmp_path), 12, 30, 20, seed=s, held_out_from="train") for s in (0, 1)]
    assert legacy[0].val_images.max() < 100 and not torch.equal(legacy[0].val_images, legacy[1].val_images)


def test_without_a_test_split_one_fixed_draw_of_training_images_is_held_out(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = np.arange(80)[:, None, None] + np.zeros((80, 12, 12))  # image i is all i: which image is which
    write_idx(tmp_path, images, rng.integers(0, 3, 80))
    first, second = (load_proxy_data(str(tmp_path), 12, 30, 20, seed=s) for s in (0, 1))
    assert torch.equal(first.val_images, second.val_images) and first.held_out_from == "training images"
    ids = lambda t: set(t[:, 0, 0, 0].tolist())  # noqa: E731
    assert not ids(first.val_images) & (ids(first.train_images) | ids(second.train_images))
    assert ids(first.train_images) != ids(second.train_images)


@pytest.mark.parametrize("compress", [True, False])
def test_an_idx_folder_is_read(tmp_path, monkeypatch, compress):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    write_idx(tmp_path, rng.integers(0, 255, (50, 12, 12)), rng.integers(0, 3, 50), compress)
    data = load_proxy_data(str(tmp_path), 16, 30, 10, seed=0)
    assert data.train_images.shape == (30, 1, 16, 16) and data.num_classes <= 3


def test_a_cifar10_python_folder_is_read_with_its_test_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (8, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 8).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_proxy_data(str(tmp_path), 32, 30, 8, seed=0)
    assert data.train_images.shape == (30, 3, 32, 32) and data.held_out_from == "test split"
    (folder / "test_batch").unlink()
    assert load_proxy_data(str(tmp_path), 32, 30, 10, seed=0).held_out_from == "training images"


def make_image_folder(root, per_class=6, corrupt=0):
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((20, 24, 3), 40 * i, dtype=np.uint8)).save(root / c / f"{i}.png")
    for i in range(corrupt):
        (root / "cats" / f"broken{i}.jpg").write_bytes(b"not an image at all")


def test_an_image_folder_skips_and_counts_unreadable_images(tmp_path):
    make_image_folder(tmp_path, per_class=6, corrupt=2)
    data = load_proxy_data(str(tmp_path), 16, 8, 4, seed=0)
    assert data.train_images.shape == (8, 3, 16, 16) and data.num_classes == 2
    full = load_proxy_data(str(tmp_path), 16, 10, 2, seed=0)  # needs every readable image: both broken ones met
    assert full.skipped == 2 and "2 unreadable images skipped" in full.describe()


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such directory"),
        (lambda p: p.mkdir(), "it is empty"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("hi")), "none of these layouts is there"),
        (lambda p: (p.mkdir(), (p / "train-images-idx3-ubyte").write_bytes(b"junk")), "train-labels-idx1-ubyte[.gz] is missing"),
    ],
)
def test_a_wrong_data_path_names_the_layouts_expected(tmp_path, setup, message):
    path = tmp_path / "data"
    setup(path)
    with pytest.raises(NasError) as err:
        load_proxy_data(str(path), 16, 8, 4, seed=0)
    assert message in str(err.value)


def test_an_image_folder_with_train_and_val_holds_out_val(tmp_path):
    make_image_folder(tmp_path / "train", per_class=6)
    make_image_folder(tmp_path / "val", per_class=2)
    data = load_proxy_data(str(tmp_path), 16, 10, 4, seed=0)
    assert data.num_classes == 2 and data.held_out_from == "test split" and len(data.val_labels) == 4
    (tmp_path / "val" / "dogs").rename(tmp_path / "val" / "wolves")
    with pytest.raises(NasError, match="must be the same folders"):
        load_proxy_data(str(tmp_path), 16, 10, 4, seed=0)


def test_too_small_a_data_set_for_the_subset_is_refused(tmp_path):
    make_image_folder(tmp_path, per_class=3)
    with pytest.raises(NasError, match="lower --subset"):
        load_proxy_data(str(tmp_path), 16, 10, 4, seed=0)


def test_the_proxy_stem_stride_keeps_four_stage_maps_of_at_least_two_pixels():
    assert ProxyRecipe(resolution=224).stem_stride == 4
    assert ProxyRecipe(resolution=28).stem_stride == 2
    assert ProxyRecipe(resolution=16).stem_stride == 1


def test_proxy_training_is_deterministic_under_a_seed_and_evaluates_where_asked_and_at_the_end(default_data):
    data = load_proxy_data(None, 28, 256, 64, seed=0)
    recipe = ProxyRecipe(epochs=2, subset=256, val_size=64, seed=3)
    spec = load_space("tiny").sample(0)
    first = list(train_proxy(spec, data, recipe, evaluate_at=[1]))
    second = list(train_proxy(spec, data, recipe, evaluate_at=[1]))
    assert [e.epoch for e in first] == [1, 2]
    assert [e.epoch for e in train_proxy(spec, data, recipe)] == [2]  # nothing asked for: the end only
    assert [e.proxy_top1 for e in first] == [e.proxy_top1 for e in second]
    assert first[-1].proxy_top1 > 20.0  # learns something beyond chance (10%) on Fashion-MNIST
    assert first[-1].images_per_second > 0 and first[-1].device == "cpu"


def test_evaluating_every_half_epoch_reports_progress_and_changes_no_training_step(default_data):
    data = load_proxy_data(None, 28, 256, 64, seed=0)
    recipe = ProxyRecipe(epochs=2, subset=256, val_size=64, rung_val_size=32, seed=3)
    spec = load_space("tiny").sample(0)
    per_epoch = list(train_proxy(spec, data, recipe, evaluate_at=[1]))
    per_half = list(train_proxy(spec, data, recipe, evaluate_at=[0.5, 1, 1.5]))
    assert [(r.progress, r.epoch) for r in per_half] == [(0.5, 0), (1, 1), (1.5, 1), (2, 2)]
    assert [r.held_out for r in per_half] == [32, 32, 32, 64]  # rungs rank on the first images, the end scores on all
    whole = [r for r in per_half if r.progress == r.epoch]
    assert [(r.proxy_top1, r.proxy_loss, r.train_loss) for r in whole] == [(r.proxy_top1, r.proxy_loss, r.train_loss) for r in per_epoch]


def test_a_diverging_trial_fails_with_its_reason(default_data):
    data = load_proxy_data(None, 28, 128, 32, seed=0)
    with pytest.raises(TrialFailed, match="diverged: the (training|held-out) loss"):
        list(train_proxy(preset("u_swin_micro"), data, ProxyRecipe(epochs=2, subset=128, val_size=32, lr=1e6)))


def test_a_training_that_ends_at_chance_fails_as_collapsed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 256), ("t10k", 400)):  # labels that no image tells: nothing to learn
        write_idx(tmp_path, rng.integers(0, 255, (n, 28, 28)), rng.integers(0, 10, n), split=split)
    data = load_proxy_data(str(tmp_path), 28, 256, 400, seed=0)
    with pytest.raises(TrialFailed, match=r"collapsed: held-out top-1 .*% after training is at chance \(1/10 = 10.0%, 400 images\)"):
        list(train_proxy(preset("u_swin_micro"), data, ProxyRecipe(epochs=1, subset=256, val_size=400)))


def test_chance_is_judged_by_the_binomial_noise_of_the_held_out_images():
    assert at_chance(10.0, 5000, 10) and at_chance(11.2, 5000, 10) and not at_chance(11.5, 5000, 10)
    assert at_chance(30.0, 16, 4) and not at_chance(60.0, 16, 4)  # 16 images: a wide margin


def test_failure_reasons_are_one_line():
    assert failure_reason(TrialFailed("diverged: x")) == "diverged: x"
    assert failure_reason(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore")).startswith("out of memory: CUDA out of memory")
    assert failure_reason(ValueError("bad\nthing")) == "ValueError: bad"


def synthetic_data(train: int, val: int, resolution: int = 28, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = lambda n: torch.randint(0, 256, (n, 1, resolution, resolution), dtype=torch.uint8, generator=g)  # noqa: E731
    labels = lambda n: torch.randint(0, classes, (n,), generator=g)  # noqa: E731
    return ProxyData(images(train), labels(train), images(val), labels(val), classes, "synthetic")


@pytest.mark.parametrize("name", ["ddwnet_t", "mixformer_b1"])
def test_a_subset_that_leaves_one_image_over_still_trains(name):
    # 65 images in batches of 64: a last batch of a single image would fail the BatchNorm over pooled
    # features of the dynamic-weight generator (ddwnet_t) and MixFormer's channel interaction.
    data = synthetic_data(65, 16)
    recipe = ProxyRecipe(epochs=1, subset=65, val_size=16, batch_size=64)
    try:
        (result,) = train_proxy(preset(name), data, recipe)
        assert result.epoch == 1 and np.isfinite(result.train_loss)
    except TrialFailed as exc:  # random labels, one step: it trained and was scored, and learned nothing
        assert str(exc).startswith("collapsed: "), exc
