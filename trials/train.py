"""Proxy training: score one architecture small and fast (DESIGN §3).

The sampled network at a lower resolution (stem stride adapted so the stage maps keep their
proportions), a width multiplier, a few epochs on a data subset; AdamW, cosine schedule with warm-up
and label smoothing from timm's factories, gradients clipped by norm; top-1 on held-out images where something
is decided: a scheduler's rungs (on the first `rung_val_size` images) and the end (on all of them). A NaN/inf
loss, a collapse to chance, an out-of-memory or any error ends the trial with a reason. Imports torch, timm,
searchspace.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable, Iterator

import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import dispatch_clip_grad
from torch import Tensor
from torch.optim.swa_utils import update_bn

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
    eval_seconds: float = 0.0  # seconds spent evaluating so far (BatchNorm statistics included)
    held_out: int = 0  # images this evaluation scored
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


def evaluation_steps(steps_per_epoch: int, epochs: int, evaluate_at: Iterable[float]) -> list[int]:
    """The optimiser steps after which to evaluate: the first whole step at or past each of `evaluate_at`
    (in epochs; those past the end dropped), and the last step."""
    total = steps_per_epoch * epochs
    steps = {min(total, max(1, math.ceil(steps_per_epoch * p - 1e-9))) for p in evaluate_at if 0 < p < epochs}
    return sorted(steps | {total})


def train_proxy(
    spec: ArchSpec, data: ProxyData, recipe: ProxyRecipe, device: str = "cpu", evaluate_at: Iterable[float] = (),
    *, init_seed: int | None = None, order_seed: int | None = None,
) -> Iterator[ProxyResult]:
    """Train `spec` at proxy scale; yields a ProxyResult after the first step at or past each point of
    `evaluate_at` (epochs: a scheduler's rungs), scored on the first `recipe.rung_val_size` held-out images,
    and at the end, scored on all `recipe.val_size` of them. Evaluating changes no training step.
    `init_seed` and `order_seed` (default: the recipe's seed) set the initial weights and the batch order
    apart, for benchmarks/proxy_noise.py. Raises TrialFailed with a reason."""
    seed = recipe.seed
    seed_everything(seed if init_seed is None else init_seed)
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
    order = torch.Generator(device="cpu").manual_seed(seed if order_seed is None else order_seed)
    batchnorms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)
    has_batchnorm = recipe.bn_batches > 0 and any(isinstance(m, batchnorms) for m in model.modules())
    total_steps = steps_per_epoch * recipe.epochs
    pending = evaluation_steps(steps_per_epoch, recipe.epochs, evaluate_at)

    seconds, eval_seconds, losses, step = 0.0, 0.0, 0.0, 0
    for epoch in range(1, recipe.epochs + 1):
        permutation = torch.randperm(len(train_y), generator=order).to(device)
        flips = torch.rand(len(train_y), generator=order).to(device) < 0.5

        def batch(i: int) -> tuple[Tensor, Tensor]:
            index = permutation[i * batch_size : (i + 1) * batch_size]
            x = normalise(train_x[index])
            return torch.where(flips[index, None, None, None], x.flip(-1), x), train_y[index]  # random horizontal flip

        total_loss, seen = 0.0, 0
        model.train()
        start = time.perf_counter()
        for i in range(steps_per_epoch):
            x, y = batch(i)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(model(x), y)
            if not torch.isfinite(loss):
                raise TrialFailed(f"diverged: the training loss became {loss.item()} at epoch {epoch}, step {i + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip_grad:
                dispatch_clip_grad(model.parameters(), recipe.clip_grad, mode="norm")
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            total_loss += loss.item() * len(y)
            seen += len(y)
            if step != pending[0]:
                continue
            pending.pop(0)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            start = time.perf_counter()
            final = step == total_steps
            if has_batchnorm:  # BatchNorm's running averages lag a network trained a few dozen steps
                update_bn([batch(j)[0] for j in range(min(recipe.bn_batches, steps_per_epoch))], model)
            size = len(val_y) if final else recipe.rung_val_size
            top1, val_loss = evaluate(model, normalise(val_x[:size]), val_y[:size], recipe.batch_size * 2, amp)
            if final and at_chance(top1, size, data.num_classes):
                raise TrialFailed(
                    f"collapsed: held-out top-1 {top1:.1f}% after training is at chance (1/{data.num_classes} = "
                    f"{100 / data.num_classes:.1f}%, {size} images)"
                )
            model.train()
            eval_seconds += time.perf_counter() - start
            whole = step % steps_per_epoch == 0
            yield ProxyResult(
                epoch=epoch if whole else epoch - 1,
                progress=epoch if whole else round(epoch - 1 + (i + 1) / steps_per_epoch, 3),
                proxy_top1=top1,
                proxy_loss=val_loss,
                train_loss=total_loss / seen,
                train_loss_sum=losses + total_loss / seen,
                train_seconds=seconds,
                images_per_second=step * batch_size / seconds,
                device=device if device == "cpu" else torch.cuda.get_device_name(),
                eval_seconds=eval_seconds,
                held_out=size,
            )
            start = time.perf_counter()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        losses += total_loss / seen


def at_chance(top1: float, images: int, classes: int, z: float = 3.0) -> bool:
    """Whether a top-1 (%) on `images` held-out images is no better than guessing among `classes`: within `z`
    binomial standard errors of 1/classes (a network that learned nothing, or collapsed to one class)."""
    p = 1 / classes
    return top1 / 100 <= p + z * math.sqrt(p * (1 - p) / images)


def train_seeds(
    spec: ArchSpec, data: ProxyData, recipe: ProxyRecipe, device: str = "cpu", evaluate_at: Iterable[float] = ()
) -> Iterator[ProxyResult]:
    """`recipe.seeds` trainings of `spec` (seeds recipe.seed, recipe.seed + 1, ...: other initial weights and
    batch order, the same data) in lockstep, so a scheduler can judge them together: each result is their
    mean, with the standard error of the mean top-1 and each seed's top-1. One seed: train_proxy's results."""
    if recipe.seeds == 1:
        yield from train_proxy(spec, data, recipe, device, evaluate_at)
        return
    evaluate_at = list(evaluate_at)
    runs = [train_proxy(spec, data, replace(recipe, seed=recipe.seed + i, seeds=1), device, evaluate_at) for i in range(recipe.seeds)]
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
            eval_seconds=sum(r.eval_seconds for r in results),
            held_out=first.held_out,
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
