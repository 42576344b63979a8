"""Proxy training: score one architecture small and fast (DESIGN §3).

The sampled network at a lower resolution (stem stride adapted so the stage maps keep their
proportions), a width multiplier, a few epochs on a data subset; AdamW, cosine schedule with warm-up
and label smoothing from timm's factories; top-1 on the held-out split after every epoch, or every part
of one for schedulers that decide mid-epoch. A NaN/inf loss, an out-of-memory or any error ends the
trial with a reason. Imports torch, timm, searchspace.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator

import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import Tensor

from searchspace import ArchSpec, build_model

from .data import ProxyData
from .recipe import BENCH_RECIPE, REFERENCE_RECIPE, ProxyRecipe  # noqa: F401 (public here too)


class TrialFailed(Exception):
    """A trial that cannot finish; its message is the reason recorded in the study."""


@dataclass
class ProxyResult:
    """An evaluation on the held-out split: `epoch` counts whole epochs trained, `progress` the epochs
    trained so far (1.5 half-way through the second; whole epochs stay integers)."""

    epoch: int
    progress: float
    proxy_top1: float
    proxy_loss: float
    train_loss: float
    train_loss_sum: float  # the mean training loss of every epoch so far, summed (Ru et al.'s SoTL)
    train_seconds: float
    images_per_second: float
    device: str
    proxy_top1_se: float | None = None  # standard error of the mean top-1 over the recipe's seeds
    seed_top1: list[float] | None = None  # each seed's top-1

    def metrics(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def pick_device(prefer_cuda: bool = True) -> str:
    return "cuda" if prefer_cuda and torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def deterministic_cuda() -> None:
    """Deterministic CUDA kernels where CUDA has them: cuDNN's deterministic algorithms without autotuning,
    cuBLAS with a fixed workspace (read when cuBLAS starts, so before the first matmul). Kernels with no
    deterministic version (atomic adds in grid_sample's backward, index_add) warn and run as they are: the
    scores move by a fraction of the seed noise (docs/design.md §6)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def proxy_model(spec: ArchSpec, data: ProxyData, recipe: ProxyRecipe) -> torch.nn.Module:
    """The network a recipe scores: `spec` at the recipe's width, windows, resolution and stem stride (on the CPU)."""
    return build_model(
        recipe.proxy_spec(spec),
        num_classes=data.num_classes,
        img_size=recipe.resolution,
        in_chans=data.channels,
        stem_stride=recipe.stem_stride,
    )


def normaliser(train_images: Tensor) -> Callable[[Tensor], Tensor]:
    """uint8 images -> float, standardised per channel with the training images' mean and std."""
    mean = train_images.float().mean((0, 2, 3), keepdim=True) / 255
    std = train_images.float().std((0, 2, 3), keepdim=True).clamp_min(1e-3) / 255
    return lambda x: (x.float() / 255 - mean) / std


def train_proxy(
    spec: ArchSpec, data: ProxyData, recipe: ProxyRecipe, device: str = "cpu", evaluations_per_epoch: int = 1
) -> Iterator[ProxyResult]:
    """Train `spec` at proxy scale; yields a ProxyResult `evaluations_per_epoch` times an epoch, at even
    steps (fewer when an epoch has fewer steps). Evaluating changes no training step. Raises TrialFailed
    with a reason."""
    seed_everything(recipe.seed)
    if device == "cuda":
        deterministic_cuda()
    try:
        model = proxy_model(spec, data, recipe).to(device)
    except (RuntimeError, ValueError, MemoryError) as exc:
        raise TrialFailed(f"building the proxy network failed: {str(exc).splitlines()[0][:200]}") from exc
    amp = device == "cuda"
    # Whole batches only, reshuffled every epoch (timm's drop_last for training): a last batch of one image
    # would fail BatchNorm over pooled (B, C) features, as in the seeds' own code.
    batch_size = min(recipe.batch_size, len(data.train_labels))
    steps_per_epoch = len(data.train_labels) // batch_size
    images = steps_per_epoch * batch_size  # images an epoch trains on
    optimizer = create_optimizer_v2(model, opt="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=recipe.epochs,
        warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.lr / 100,
        min_lr=recipe.lr / 100,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    criterion = LabelSmoothingCrossEntropy(recipe.label_smoothing)
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    val_x, val_y = data.val_images.to(device), data.val_labels.to(device)
    normalise = normaliser(train_x)
    order = torch.Generator(device="cpu").manual_seed(recipe.seed)

    # the steps after which an epoch is evaluated: evenly spaced, the last one ending the epoch
    ends = sorted({math.ceil(steps_per_epoch * k / evaluations_per_epoch) for k in range(1, evaluations_per_epoch + 1)})
    seconds, updates, losses = 0.0, 0, 0.0
    for epoch in range(1, recipe.epochs + 1):
        permutation = torch.randperm(len(train_y), generator=order).to(device)
        flips = torch.rand(len(train_y), generator=order).to(device) < 0.5
        total_loss, seen, begin = 0.0, 0, 0
        for end in ends:
            model.train()
            start = time.perf_counter()
            for step in range(begin, end):
                index = permutation[step * batch_size : (step + 1) * batch_size]
                x = normalise(train_x[index])
                x = torch.where(flips[index, None, None, None], x.flip(-1), x)  # random horizontal flip
                with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                    loss = criterion(model(x), train_y[index])
                if not torch.isfinite(loss):
                    raise TrialFailed(f"diverged: the training loss became {loss.item()} at epoch {epoch}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                updates += 1
                scheduler.step_update(updates)
                total_loss += loss.item() * len(index)
                seen += len(index)
            begin = end
            if device == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            top1, val_loss = evaluate(model, normalise(val_x), val_y, recipe.batch_size * 2, amp)
            whole = end == steps_per_epoch
            yield ProxyResult(
                epoch=epoch if whole else epoch - 1,
                progress=epoch if whole else round(epoch - 1 + end / steps_per_epoch, 3),
                proxy_top1=top1,
                proxy_loss=val_loss,
                train_loss=total_loss / seen,
                train_loss_sum=losses + total_loss / seen,
                train_seconds=seconds,
                images_per_second=(images * (epoch - 1) + seen) / seconds,
                device=device if device == "cpu" else torch.cuda.get_device_name(),
            )
        losses += total_loss / seen


def train_seeds(
    spec: ArchSpec, data: ProxyData, recipe: ProxyRecipe, device: str = "cpu", evaluations_per_epoch: int = 1
) -> Iterator[ProxyResult]:
    """`recipe.seeds` trainings of `spec` (seeds recipe.seed, recipe.seed + 1, ...: other initial weights and
    batch order, the same data) in lockstep, so a scheduler can judge them together: each result is their
    mean, with the standard error of the mean top-1 and each seed's top-1. One seed: train_proxy's results."""
    if recipe.seeds == 1:
        yield from train_proxy(spec, data, recipe, device, evaluations_per_epoch)
        return
    runs = [train_proxy(spec, data, replace(recipe, seed=recipe.seed + i, seeds=1), device, evaluations_per_epoch) for i in range(recipe.seeds)]
    for results in zip(*runs):
        top1 = [r.proxy_top1 for r in results]
        first = results[0]
        yield ProxyResult(
            epoch=first.epoch,
            progress=first.progress,
            proxy_top1=statistics.fmean(top1),
            proxy_loss=statistics.fmean(r.proxy_loss for r in results),
            train_loss=statistics.fmean(r.train_loss for r in results),
            train_loss_sum=statistics.fmean(r.train_loss_sum for r in results),
            train_seconds=sum(r.train_seconds for r in results),
            images_per_second=len(results) / sum(1 / r.images_per_second for r in results),
            device=first.device,
            proxy_top1_se=statistics.stdev(top1) / math.sqrt(len(top1)),
            seed_top1=top1,
        )


@torch.no_grad()
def evaluate(model, images, labels, batch_size: int, amp: bool) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy on a held-out split."""
    model.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(labels), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float()
        loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
    if not math.isfinite(loss):
        raise TrialFailed(f"diverged: the held-out loss is {loss}")
    return 100.0 * correct / len(labels), loss / len(labels)


def failure_reason(exc: BaseException) -> str:
    """The one-line reason a failed trial records."""
    if isinstance(exc, TrialFailed):
        cause = exc.__cause__
        if cause is not None and _is_out_of_memory(cause):
            return f"{exc} (out of memory)"
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return f"out of memory: {str(exc).splitlines()[0][:200]}"
    if _is_out_of_memory(exc):
        return "out of memory: the trial could not allocate host memory"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else 'no message'}"


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "DefaultCPUAllocator" in text


@contextmanager
def memory_cap(limit: int | None):
    """Let this process allocate at most `limit` more bytes (Linux RLIMIT_AS on the soft limit, restored
    after): a trial that needs more fails as out of memory instead of taking the machine down."""
    if not limit:
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * resource.getpagesize()
    cap = in_use + limit if hard == resource.RLIM_INFINITY else min(hard, in_use + limit)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
