"""Zero-cost proxies: score an untrained architecture at proxy scale in about a second (NASWOT, synflow,
grad-norm), an optional pre-screen before proxy training. Imports torch, timm, searchspace; never
dashboards, nas or Ray.

Every proxy sums over the network's weights: the zero-cost paper scores the weights of Conv2d and
Linear layers; ours are every parameter with two or more dimensions, which also takes in the mixers'
own kernels and position tables (static_weight, ghost, rel_table, pos_embed) and leaves out biases,
norm gains and layer scales as the paper does.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch
from timm.layers import activations as timm_act
from timm.loss import LabelSmoothingCrossEntropy
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from searchspace import ArchSpec, NasError, count

from .data import ProxyData
from .train import ProxyRecipe, failure_reason, normaliser, proxy_model, seed_everything

# The rectifier-like units whose on/off pattern is NASWOT's binary code. Sigmoid gates (squeeze-excitation,
# MixFormer's interactions) are not units that switch on and off, so they are left out.
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.Hardswish,
    nn.SiLU,
    nn.Mish,
    timm_act.GELU,
    timm_act.GELUTanh,
    timm_act.QuickGELU,
    timm_act.HardSwish,
    timm_act.Swish,
    timm_act.Mish,
    timm_act.HardMish,
)


def weights(model: nn.Module) -> list[Tensor]:
    """The parameters the proxies score (see the module docstring)."""
    return [p for p in model.parameters() if p.dim() >= 2]


@torch.no_grad()
def naswot(model: nn.Module, images: Tensor) -> float:
    """NASWOT (Mellor et al., ICML 2021): log |K_H| of the minibatch's binary activation codes, where
    K_H[i, j] = N_A - Hamming(c_i, c_j). The paper's code is which ReLUs are on; our networks use GELU,
    ReLU and hard-swish, so c_i is the sign (> 0) of the input of every activation module listed in
    ACTIVATIONS (torch's and timm's classes). Activations applied as functions (the deformable mixer's
    context F.gelu) are not modules and not counted. A singular K_H (two images with the same code) is
    log 0 = -inf: the network cannot tell them apart, the worst score the paper's measure gives.
    Runs in train mode (batch statistics), as the paper scores a network as it is built."""
    model.train()
    batch = images.shape[0]
    kernel = torch.zeros(batch, batch, dtype=torch.float64)

    def add_codes(module, inputs):
        code = (inputs[0].reshape(batch, -1) > 0).double()  # batch is the outermost dimension of every input
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    hooks = [m.register_forward_pre_hook(add_codes) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return logdet.item() if sign > 0 else -math.inf  # K_H is positive semi-definite: sign <= 0 means singular


def synflow(model: nn.Module, image_shape: tuple[int, ...]) -> float:
    """synflow (Tanaka et al., NeurIPS 2020; a zero-cost proxy in Abdelfattah et al., ICLR 2021): on a float64
    copy with |theta| for every parameter, R = sum of the output for one all-ones input, and the score is
    sum |theta * dR/dtheta| over the weights. Uses no data.

    Normalisation: the zero-cost paper builds its BatchNorm networks without BatchNorm for synflow; here
    BatchNorm runs in eval mode with its running statistics reset (mean 0, variance 1), which is that
    identity up to its affine (1 and 0 at initialisation) and carries no data statistics. LayerNorm stays:
    it normalises each token by the token's own statistics, which for the all-ones input involve no data,
    and without it the signal grows doubly exponentially through our input-dependent weights (attention,
    dynamic filters) and overflows even float64 on about one sampled point of the unified space in ten."""
    linear = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in linear.parameters():
            p.abs_()
    for module in linear.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
    linear.zero_grad(set_to_none=True)
    linear(torch.ones(1, *image_shape, dtype=torch.float64)).sum().backward()
    return sum((p * p.grad).abs().sum().item() for p in weights(linear) if p.grad is not None)


def grad_norm(model: nn.Module, images: Tensor, labels: Tensor, criterion: nn.Module) -> float:
    """grad-norm (Abdelfattah et al., ICLR 2021): sum over the weights of the Euclidean norm of the
    gradient of the training loss on one minibatch (train mode, as the first step of training)."""
    model.train()
    model.zero_grad(set_to_none=True)
    criterion(model(images), labels).backward()
    return sum(p.grad.norm().item() for p in weights(model) if p.grad is not None)


PROXIES = ("naswot", "synflow", "grad_norm")


def zero_cost_scores(
    spec: ArchSpec,
    data: ProxyData,
    recipe: ProxyRecipe,
    proxies: tuple[str, ...] = PROXIES,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Each proxy's score for `spec`'s proxy network, plus the full-size network's `macs` and `params` as
    the baseline to beat. The network is train_proxy's (same scaled spec, resolution, stem stride, image
    normalisation and loss), built on the CPU with weights seeded by `seed` (seed=recipe.seed gives the
    weights training would start from); the minibatch is `batch_size` training images drawn with `seed`.
    A proxy that fails or gives inf/NaN scores NaN, with a RuntimeWarning, and the others still run."""
    unknown = [p for p in proxies if p not in PROXIES]
    if unknown:
        raise NasError(f"unknown zero-cost proxy {', '.join(unknown)}; choose from {', '.join(PROXIES)}")
    params, macs = count(spec)
    scores = {"macs": float(macs), "params": float(params)}
    pick = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))[:batch_size]
    images, labels = normaliser(data.train_images)(data.train_images[pick]), data.train_labels[pick]
    runs: dict[str, Callable[[nn.Module], float]] = {
        "naswot": lambda model: naswot(model, images),
        "synflow": lambda model: synflow(model, images.shape[1:]),
        "grad_norm": lambda model: grad_norm(model, images, labels, LabelSmoothingCrossEntropy(recipe.label_smoothing)),
    }
    for name in proxies:
        scores[name] = math.nan
        try:
            seed_everything(seed)  # each proxy sees the same initial weights, whichever ran before it
            score = runs[name](proxy_model(spec, data, recipe))
        except (RuntimeError, ValueError, MemoryError) as exc:
            warnings.warn(f"zero-cost proxy {name} failed on {spec.name or 'the point'}: {failure_reason(exc)}", RuntimeWarning)
            continue
        if math.isfinite(score) or (name == "naswot" and score == -math.inf):
            scores[name] = score
        else:
            warnings.warn(f"zero-cost proxy {name} gave {score} on {spec.name or 'the point'}", RuntimeWarning)
    return scores

