"""Data for tests that must run where Debian's Fashion-MNIST package is missing: IDX files written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, compress: bool = False, split: str = "train") -> Path:
    """Fashion-MNIST's training files (train-images-idx3-ubyte, train-labels-idx1-ubyte) in `folder`, or with
    `split` "t10k" its test files."""

    def blob(magic, array):
        dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        return magic + dims + array.astype(np.uint8).tobytes()

    folder.mkdir(parents=True, exist_ok=True)
    for name, data in ((f"{split}-images-idx3-ubyte", blob(b"\x00\x00\x08\x03", images)), (f"{split}-labels-idx1-ubyte", blob(b"\x00\x00\x08\x01", labels))):
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def fashion_like(folder: Path, images: int = 3000, classes: int = 10, seed: int = 0, test_images: int = 5000) -> Path:
    """A learnable stand-in for Fashion-MNIST: each class a random 28x28 template, each image its class's
    template under noise and a random shift (a proxy learns it within an epoch, not at once); a test split
    of `test_images` (none: 0) drawn the same way."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (classes, 28, 28))
    for split, n in (("train", images), ("t10k", test_images)):
        if not n:
            continue
        labels = rng.integers(0, classes, n)
        noisy = templates[labels] * 0.75 + rng.integers(0, 256, (n, 28, 28)) * 0.25
        shifts = rng.integers(-1, 2, (n, 2))
        shifted = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(noisy, shifts)])
        write_idx(folder, shifted.clip(0, 255), labels, compress=True, split=split)  # gzip, as Debian ships them
    return folder
