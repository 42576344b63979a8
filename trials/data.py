"""The proxy's data: a seeded subset of a labelled image set, resized to the proxy resolution and held
in memory as uint8 tensors, with a held-out split for top-1 (the official test split stays untouched).

Sources: the embedded default (Fashion-MNIST from Debian's dataset-fashion-mnist package), a
Fashion-MNIST IDX folder, a CIFAR-10 python-format folder, or an ImageFolder tree; read through
torchvision's IDX reader and ImageFolder. Nothing downloads. Imports torch, torchvision, searchspace.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from searchspace import NasError

DEFAULT_DATA = "fashion-mnist"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LAYOUTS = (
    "a Fashion-MNIST IDX folder (train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]), "
    "a CIFAR-10 python folder (cifar-10-batches-py with data_batch_1..5), "
    "or an ImageFolder tree (one subfolder of images per class)"
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class ProxyData:
    """Training and held-out images (uint8, N x C x R x R) with labels, plus what they came from."""

    train_images: Tensor
    train_labels: Tensor
    val_images: Tensor
    val_labels: Tensor
    num_classes: int
    name: str
    skipped: int = 0  # unreadable images left out (ImageFolder)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def resolution(self) -> int:
        return self.train_images.shape[-1]

    def describe(self) -> str:
        text = f"{self.name}: {len(self.train_labels)} training / {len(self.val_labels)} held-out images, "
        text += f"{self.num_classes} classes, {self.channels}x{self.resolution}x{self.resolution}"
        return text + (f", {self.skipped} unreadable images skipped" if self.skipped else "")


def data_name(source: str | None) -> str:
    """A short name for study names: 'fashion-mnist', or the folder's name."""
    if source in (None, DEFAULT_DATA):
        return DEFAULT_DATA
    return Path(source).resolve().name or "data"


def load_proxy_data(source: str | None, resolution: int, subset: int, val_size: int, seed: int) -> ProxyData:
    """Read a data source and draw `subset` training and `val_size` held-out images (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    path, kind = _locate(source)
    wanted = subset + val_size
    skipped = 0
    if kind == "idx":
        images, labels = _read_idx(path)
        images = images.unsqueeze(1)
    elif kind == "cifar":
        images, labels = _read_cifar(path)
    else:
        images, labels, skipped = _read_image_folder(path, wanted, resolution, generator)
    num_classes = int(labels.max()) + 1
    if len(labels) < wanted:
        raise NasError(
            f"--data {path}: {len(labels)} usable images, fewer than the {subset} training + {val_size} "
            "held-out images the proxy recipe asks for; lower --subset"
        )
    order = torch.randperm(len(labels), generator=generator)[:wanted]
    images, labels = _resize(images[order], resolution), labels[order]
    return ProxyData(
        images[:subset], labels[:subset], images[subset:], labels[subset:], num_classes, data_name(source), skipped
    )


def _locate(source: str | None) -> tuple[Path, str]:
    if source in (None, DEFAULT_DATA):
        if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
            raise NasError(
                "the default data set is Fashion-MNIST from Debian's dataset-fashion-mnist package, which is "
                "not installed: run 'sudo apt-get install dataset-fashion-mnist' (make search does), or pass --data PATH"
            )
        return DEBIAN_FASHION_MNIST, "idx"
    path = Path(source).expanduser()
    if not path.is_dir():
        raise NasError(f"--data {source}: no such directory; expected {LAYOUTS}")
    if any((path / f"train-images-idx3-ubyte{z}").exists() for z in ("", ".gz")):
        return path, "idx"
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / "data_batch_1").exists():
            return folder, "cifar"
    classes = [d for d in path.iterdir() if d.is_dir()]
    if classes and any(_images_in(d) for d in classes):
        return path, "folder"
    found = "it is empty" if not any(path.iterdir()) else "none of these layouts is there"
    raise NasError(f"--data {source}: {found}; expected {LAYOUTS}")


# --- readers ---------------------------------------------------------------------------------------------
def _read_idx(path: Path) -> tuple[Tensor, Tensor]:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    files = {}
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        files[stem] = _uncompressed(path, stem)
    try:
        images = read_image_file(str(files["train-images-idx3-ubyte"]))
        labels = read_label_file(str(files["train-labels-idx1-ubyte"]))
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise NasError(f"--data {path}: malformed IDX files ({exc.__class__.__name__}); expected {LAYOUTS}") from None
    if len(images) != len(labels):
        raise NasError(f"--data {path}: {len(images)} images but {len(labels)} labels in the IDX files")
    return images, labels.long()


def _uncompressed(path: Path, stem: str) -> Path:
    """torchvision's IDX reader wants plain files; gzip ones are unpacked once into the user cache."""
    plain = path / stem
    if plain.exists():
        return plain
    packed = path / f"{stem}.gz"
    if not packed.exists():
        raise NasError(f"--data {path}: {stem}[.gz] is missing; expected {LAYOUTS}")
    stat = packed.stat()
    key = hashlib.sha1(f"{packed.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = _cache_dir() / f"idx-{key}" / stem
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        try:
            with gzip.open(packed) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as exc:
            raise NasError(f"--data {path}: cannot unpack {packed.name} ({exc})") from None
        partial.replace(target)
    return target


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nas-unified"


def _read_cifar(path: Path) -> tuple[Tensor, Tensor]:
    """The five pickled training batches of the CIFAR-10 python format. Read directly: torchvision's
    CIFAR10 class checks the md5 sums of the official download and refuses a re-packed folder.
    (The format is pickle by definition; point --data only at folders you trust.)"""
    images, labels = [], []
    for i in range(1, 6):
        file = path / f"data_batch_{i}"
        try:
            with open(file, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(torch.as_tensor(batch["data"], dtype=torch.uint8).view(-1, 3, 32, 32))
            labels.extend(batch["labels"])
        except (OSError, pickle.UnpicklingError, KeyError, EOFError, RuntimeError, ValueError) as exc:
            raise NasError(f"--data {path}: {file.name} is not a CIFAR-10 python batch ({exc.__class__.__name__}); expected {LAYOUTS}") from None
    return torch.cat(images), torch.tensor(labels, dtype=torch.long)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_image_folder(path: Path, wanted: int, resolution: int, generator) -> tuple[Tensor, Tensor, int]:
    """Decode only the images the subset needs. An unreadable image is skipped and counted, not fatal:
    one bad file among thousands should not stop an hours-long search; the count is reported."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.v2.functional import pil_to_tensor

    tree = ImageFolder(str(path), allow_empty=True)
    order = torch.randperm(len(tree.samples), generator=generator).tolist()
    images, labels, skipped = [], [], 0
    for index in order:
        file, label = tree.samples[index]
        try:
            with Image.open(file) as img:
                img = img.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
                images.append(pil_to_tensor(img))
        except (UnidentifiedImageError, OSError, ValueError):
            skipped += 1
            continue
        labels.append(label)
        if len(labels) == wanted:
            break
    if not images:
        raise NasError(f"--data {path}: no readable image in the ImageFolder tree ({skipped} unreadable)")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), skipped


def _resize(images: Tensor, resolution: int) -> Tensor:
    if images.shape[-2:] == (resolution, resolution):
        return images.contiguous()
    resized = F.interpolate(images.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)
