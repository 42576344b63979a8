"""Weight normalisations over a filter's positions (ELSA's study): none, softmax, DDF's filter norm.

Imports torch and searchspace's spec and axes base only.
"""

from __future__ import annotations

from torch import Tensor

from ..spec import register_weight_norm
from ._base import WeightNorm


@register_weight_norm
class NoNorm(WeightNorm):
    name = "none"

    def __call__(self, weights: Tensor, dim: int, outside: Tensor | None = None) -> Tensor:
        return weights if outside is None else weights.masked_fill(outside, 0.0)


@register_weight_norm
class Softmax(WeightNorm):
    name = "softmax"

    def __call__(self, weights: Tensor, dim: int, outside: Tensor | None = None) -> Tensor:
        return (weights if outside is None else weights.masked_fill(outside, float("-inf"))).softmax(dim)


@register_weight_norm
class FilterNorm(WeightNorm):
    """DDF's filter normalisation: zero mean, unit norm over the taps of each filter."""

    name = "filter_norm"

    def __call__(self, weights: Tensor, dim: int, outside: Tensor | None = None) -> Tensor:
        if outside is None:
            centred = weights - weights.mean(dim, keepdim=True)
        else:
            inside = (~outside).to(weights.dtype)
            mean = (weights * inside).sum(dim, keepdim=True) / inside.sum(dim, keepdim=True)
            centred = (weights - mean) * inside
        return centred / (centred.norm(dim=dim, keepdim=True) + 1e-5)
