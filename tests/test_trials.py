"""Proxy data and proxy training: the default data, the three folder layouts, determinism, failures."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from datalib import write_idx
from searchspace import NasError, load_space, preset
from trials import ProxyData, ProxyRecipe, TrialFailed, failure_reason, load_proxy_data, train_proxy

@pytest.fixture
def default_data(monkeypatch, proxy_data_dir):
    """The default data source: Debian's package, or where it is missing its stand-in in the same place."""
    import trials.data

    monkeypatch.setattr(trials.data, "DEBIAN_FASHION_MNIST", proxy_data_dir)
    return None


def test_the_default_data_is_debians_fashion_mnist_resized_and_split_by_seed(default_data):
    data = load_proxy_data(None, 28, 300, 100, seed=1)
    assert data.train_images.shape == (300, 1, 28, 28) and data.val_images.shape == (100, 1, 28, 28)
    assert data.num_classes == 10 and data.name == "fashion-mnist"
    again = load_proxy_data(None, 28, 300, 100, seed=1)
    assert torch.equal(data.train_labels, again.train_labels)
    other = load_proxy_data(None, 28, 300, 100, seed=2)
    assert not torch.equal(data.train_labels, other.train_labels)


@pytest.mark.parametrize("compress", [True, False])
def test_an_idx_folder_is_read(tmp_path, monkeypatch, compress):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    write_idx(tmp_path, rng.integers(0, 255, (50, 12, 12)), rng.integers(0, 3, 50), compress)
    data = load_proxy_data(str(tmp_path), 16, 30, 10, seed=0)
    assert data.train_images.shape == (30, 1, 16, 16) and data.num_classes <= 3


def test_a_cifar10_python_folder_is_read(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {"data": rng.integers(0, 255, (8, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 8).tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    data = load_proxy_data(str(tmp_path), 32, 30, 10, seed=0)
    assert data.train_images.shape == (30, 3, 32, 32)


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


def test_too_small_a_data_set_for_the_subset_is_refused(tmp_path):
    make_image_folder(tmp_path, per_class=3)
    with pytest.raises(NasError, match="lower --subset"):
        load_proxy_data(str(tmp_path), 16, 10, 4, seed=0)


def test_the_proxy_stem_stride_keeps_four_stage_maps_of_at_least_two_pixels():
    assert ProxyRecipe(resolution=224).stem_stride == 4
    assert ProxyRecipe(resolution=28).stem_stride == 2
    assert ProxyRecipe(resolution=16).stem_stride == 1


def test_proxy_training_is_deterministic_under_a_seed_and_reports_every_epoch(default_data):
    data = load_proxy_data(None, 28, 256, 64, seed=0)
    recipe = ProxyRecipe(epochs=2, subset=256, val_size=64, seed=3)
    spec = load_space("tiny").sample(0)
    first = list(train_proxy(spec, data, recipe))
    second = list(train_proxy(spec, data, recipe))
    assert [e.epoch for e in first] == [1, 2]
    assert [e.proxy_top1 for e in first] == [e.proxy_top1 for e in second]
    assert first[-1].proxy_top1 > 20.0  # learns something beyond chance (10%) on Fashion-MNIST
    assert first[-1].images_per_second > 0 and first[-1].device == "cpu"


def test_evaluating_every_half_epoch_reports_progress_and_changes_no_training_step(default_data):
    data = load_proxy_data(None, 28, 256, 64, seed=0)
    recipe = ProxyRecipe(epochs=2, subset=256, val_size=64, seed=3)
    spec = load_space("tiny").sample(0)
    per_epoch = list(train_proxy(spec, data, recipe))
    per_half = list(train_proxy(spec, data, recipe, evaluations_per_epoch=2))
    assert [(r.progress, r.epoch) for r in per_half] == [(0.5, 0), (1, 1), (1.5, 1), (2, 2)]
    whole = [r for r in per_half if r.progress == r.epoch]
    assert [(r.proxy_top1, r.proxy_loss, r.train_loss) for r in whole] == [(r.proxy_top1, r.proxy_loss, r.train_loss) for r in per_epoch]


def test_a_diverging_trial_fails_with_its_reason(default_data):
    data = load_proxy_data(None, 28, 128, 32, seed=0)
    with pytest.raises(TrialFailed, match="diverged: the (training|held-out) loss"):
        list(train_proxy(preset("u_swin_micro"), data, ProxyRecipe(epochs=2, subset=128, val_size=32, lr=1e6)))


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
    (result,) = train_proxy(preset(name), data, recipe)
    assert result.epoch == 1 and np.isfinite(result.train_loss)
