"""The proxy's data: a seeded subset of a labelled image set, resized to the proxy resolution and held
in memory as uint8 tensors, with held-out images for top-1 drawn from the source's test split (Fashion-MNIST's
t10k files, CIFAR-10's test_batch, an ImageFolder's val/ or test/ folder) and the same for every seed, so two
seeds differ in their training only, never in the images they are scored on.

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
# The held-out images are one fixed draw, whatever the recipe's seed: the same images score every trial of
# every study of a recipe (a seed that changed them added their sampling noise to the seed-to-seed noise).
HELD_OUT_SEED = 0
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LAYOUTS = (
    "a Fashion-MNIST IDX folder (train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]), "
    "a CIFAR-10 python folder (cifar-10-batches-py with data_batch_1..5), "
    "or an ImageFolder tree (one subfolder of images per class; or train/ beside val/ or test/)"
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
    held_out_from: str = "test split"  # or "training images", for a source without a test split

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def resolution(self) -> int:
        return self.train_images.shape[-1]

    def describe(self) -> str:
        text = f"{self.name}: {len(self.train_labels)} training / {len(self.val_labels)} held-out images (from its {self.held_out_from}), "
        text += f"{self.num_classes} classes, {self.channels}x{self.resolution}x{self.resolution}"
        return text + (f", {self.skipped} unreadable images skipped" if self.skipped else "")


def data_name(source: str | None) -> str:
    """A short name for study names: 'fashion-mnist', or the folder's name."""
    if source in (None, DEFAULT_DATA):
        return DEFAULT_DATA
    return Path(source).resolve().name or "data"


def load_proxy_data(source: str | None, resolution: int, subset: int, val_size: int, seed: int, held_out_from: str = "test") -> ProxyData:
    """Read a data source: `subset` training images drawn with `seed`, and `val_size` held-out images drawn
    from its test split with HELD_OUT_SEED (from the training images, apart from the subset, where the source
    has no test split). `held_out_from` "train": held out from the training draw with `seed` (earlier versions)."""
    path, kind = _locate(source)
    train, test = _splits(path, kind)
    legacy = held_out_from == "train"
    if test is None or legacy:  # hold out training images, never trained on
        held_out_from = "training images"
        images, labels, skipped = _read(path, train, kind, subset + val_size, resolution, seed if legacy else HELD_OUT_SEED)
        _enough(path, len(labels), subset + val_size, f"{subset} training + {val_size} held-out images")
        if legacy:  # earlier versions: one seeded draw, its first images trained, the rest held out
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[: subset + val_size]
            picked, val = order[:subset], order[subset:]
        else:
            pool = torch.randperm(len(labels), generator=torch.Generator().manual_seed(HELD_OUT_SEED))
            val, rest = pool[:val_size], pool[val_size:]
            picked = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))[:subset]]
        val_images, val_labels = images[val], labels[val]
        images, labels = images[picked], labels[picked]
    else:
        held_out_from = "test split"
        images, labels, skipped = _read(path, train, kind, subset, resolution, seed)
        _enough(path, len(labels), subset, f"{subset} training images", "--subset")
        images, labels = _draw(images, labels, subset, seed)
        val_images, val_labels, skipped_val = _read(path, test, kind, val_size, resolution, HELD_OUT_SEED)
        _enough(path, len(val_labels), val_size, f"{val_size} held-out images", "--held-out", " in its test split")
        val_images, val_labels = _draw(val_images, val_labels, val_size, HELD_OUT_SEED)
        skipped += skipped_val
    num_classes = int(max(labels.max(), val_labels.max())) + 1
    return ProxyData(
        _resize(images, resolution), labels, _resize(val_images, resolution), val_labels, num_classes, data_name(source),
        skipped, held_out_from,
    )


def _draw(images: Tensor, labels: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    return images[order], labels[order]


def _enough(path: Path, have: int, want: int, what: str, option: str = "--subset or --held-out", where: str = "") -> None:
    if have < want:
        raise NasError(f"--data {path}: {have} usable images{where}, fewer than the {what} the proxy recipe asks for; lower {option}")


def _splits(path: Path, kind: str):
    """The training and test parts of a located source (test None where it has none): file stems for IDX,
    batch names for CIFAR, folders for ImageFolder."""
    if kind == "idx":
        test = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        has_test = all(any((path / f"{stem}{z}").exists() for z in ("", ".gz")) for stem in test)
        return ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), test if has_test else None
    if kind == "cifar":
        return [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"] if (path / "test_batch").exists() else None
    split = next((path / name for name in ("val", "test") if (path / name).is_dir()), None)
    if split is not None and (path / "train").is_dir():
        return path / "train", split
    return path, None


def _read(path: Path, part, kind: str, wanted: int, resolution: int, seed: int) -> tuple[Tensor, Tensor, int]:
    """Images (N x C x H x W uint8; ImageFolder's already at `resolution`) and labels of one part of a source
    (_splits'); ImageFolder decodes only the first `wanted` readable images of an order drawn with `seed`."""
    if kind == "idx":
        images, labels = _read_idx(path, *part)
        return images.unsqueeze(1), labels, 0
    if kind == "cifar":
        images, labels = _read_cifar(path, part)
        return images, labels, 0
    return _read_image_folder(part, wanted, resolution, torch.Generator().manual_seed(seed), classes_of=path / "train" if part != path else None)


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
def _read_idx(path: Path, images_stem: str, labels_stem: str) -> tuple[Tensor, Tensor]:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images_file, labels_file = _uncompressed(path, images_stem), _uncompressed(path, labels_stem)
    try:
        images = read_image_file(str(images_file))
        labels = read_label_file(str(labels_file))
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


def _read_cifar(path: Path, batches: list[str]) -> tuple[Tensor, Tensor]:
    """Pickled batches of the CIFAR-10 python format (data_batch_1..5, test_batch). Read directly: torchvision's
    CIFAR10 class checks the md5 sums of the official download and refuses a re-packed folder.
    (The format is pickle by definition; point --data only at folders you trust.)"""
    images, labels = [], []
    for name in batches:
        file = path / name
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


def _read_image_folder(path: Path, wanted: int, resolution: int, generator, classes_of: Path | None = None) -> tuple[Tensor, Tensor, int]:
    """Decode only the images the subset needs. An unreadable image is skipped and counted, not fatal:
    one bad file among thousands should not stop an hours-long search; the count is reported. A held-out
    folder (val/, test/) must hold the classes of `classes_of` (train/), so a label means one class in both."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.v2.functional import pil_to_tensor

    tree = ImageFolder(str(path), allow_empty=True)
    if classes_of is not None and path != classes_of:
        expected = ImageFolder(str(classes_of), allow_empty=True).classes
        if tree.classes != expected:
            raise NasError(f"--data {path.parent}: {path.name}/ holds the classes {tree.classes[:5]}..., train/ holds {expected[:5]}...; they must be the same folders")
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
