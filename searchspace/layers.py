"""Small layers shared by the mixer and the blocks, on channels-last tensors (B, H, W, C).

Everything timm has is taken from timm; what is here it lacks. Imports torch, timm and the spec.
"""

from __future__ import annotations

from timm.layers import get_act_layer
from torch import Tensor, nn

from . import cost


class LastDimBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last (channel) dimension of a channels-last tensor.

    timm's and torch's BatchNorm2d want NCHW; our blocks stay channels-last like timm's Swin.
    """

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).view(shape)


def norm_layer(kind: str, dim: int) -> nn.Module:
    return nn.LayerNorm(dim) if kind == "layernorm" else LastDimBatchNorm(dim)


def act_layer(name: str) -> type[nn.Module]:
    return get_act_layer(name)


def nchw(x: Tensor) -> Tensor:
    """A channels-last (B, H, W, C) tensor as an NCHW view (memory format channels_last, no copy)."""
    return x.permute(0, 3, 1, 2)


def nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def projection(kind: str, cin: int, cout: int, act: bool) -> nn.Module:
    """A per-pixel projection: a linear layer, or DWNet's 1x1 conv (no bias) + BN (+ ReLU)."""
    if kind == "linear":
        return nn.Linear(cin, cout)
    layers = [nn.Linear(cin, cout, bias=False), LastDimBatchNorm(cout)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def projection_cost(kind: str, cin: int, cout: int, tokens: int) -> cost.Cost:
    if kind == "linear":
        return cost.linear(cin, cout, tokens)
    return cost.linear(cin, cout, tokens, bias=False) + cost.norm(cout)


class ConvBNAct(nn.Module):
    """A channels-last wrapper of conv -> norm -> act used by stems and downsampling."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm: nn.Module | None, act: bool, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, bias=bias)
        self.norm = norm or nn.Identity()
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # NHWC -> NHWC
        return self.act(self.norm(nhwc(self.conv(nchw(x)))))

