"""Kernels for dynamic weights over a sliding K x K neighbourhood, in pure PyTorch.

Written by hand because neither torch nor timm has them: the naive path unfolds the input to
(B, C, K*K, H, W), K*K times the activation memory (470 MB for one stage-1 block at batch 8, K=7).
These loop over the K*K offsets instead, using strided views of one padded copy, so memory stays at
O(B*C*H*W) in forward and backward. They are registered as torch custom ops with their own cost
formulas, so `torch.utils.flop_counter.FlopCounterMode` counts them like any convolution, and with their
ONNX translations (`onnx_translations`), so torch.onnx.export writes them in standard ONNX operators.
Imports only torch (and onnxscript, inside `onnx_translations`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

__all__ = ["sliding_aggregate", "sliding_logits", "neighbourhood_mask", "onnx_translations"]


def _offsets(kernel: int):
    for k in range(kernel * kernel):
        yield k, k // kernel, k % kernel


def _pad(x: Tensor, kernel: int) -> Tensor:
    p = kernel // 2
    return F.pad(x, (p, p, p, p))


def _grouped(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w)


# --- y[c, i] = sum_k w[g(c), k, i] * v[c, i + o_k] ------------------------------------------------
@torch.library.custom_op("nas_unified::sliding_aggregate", mutates_args=())
def sliding_aggregate(value: Tensor, weight: Tensor, kernel: int) -> Tensor:
    """Aggregate `value` (B, C, H, W) over each pixel's K x K neighbourhood (zero padded) with
    per-pixel weights `weight` (B, G, K*K, H, W), one set per group of C/G channels."""
    b, c, h, w = value.shape
    groups = weight.shape[1]
    vp = _grouped(_pad(value, kernel), groups)
    out = value.new_zeros(b, groups, c // groups, h, w)
    for k, dy, dx in _offsets(kernel):
        out.addcmul_(vp[..., dy : dy + h, dx : dx + w], weight[:, :, k : k + 1])
    return out.reshape(b, c, h, w)


@sliding_aggregate.register_fake
def _(value, weight, kernel):
    return value.new_empty(value.shape)


def _aggregate_setup(ctx, inputs, output):
    value, weight, kernel = inputs
    ctx.save_for_backward(value, weight)
    ctx.kernel = kernel


def _aggregate_backward(ctx, grad_out):
    value, weight = ctx.saved_tensors
    kernel, groups = ctx.kernel, weight.shape[1]
    b, c, h, w = value.shape
    p = kernel // 2
    g = _grouped(grad_out.contiguous(), groups)
    vp = _grouped(_pad(value, kernel), groups)
    grad_vp = torch.zeros_like(vp)
    grad_w = torch.empty_like(weight)
    for k, dy, dx in _offsets(kernel):
        torch.sum(g * vp[..., dy : dy + h, dx : dx + w], dim=2, out=grad_w[:, :, k])
        grad_vp[..., dy : dy + h, dx : dx + w].addcmul_(g, weight[:, :, k : k + 1])
    grad_v = grad_vp[..., p : p + h, p : p + w].reshape(b, c, h, w)
    return grad_v, grad_w, None


sliding_aggregate.register_autograd(_aggregate_backward, setup_context=_aggregate_setup)


# --- l[g, k, i] = sum_{c in g} q[c, i] * k[c, i + o_k] --------------------------------------------
@torch.library.custom_op("nas_unified::sliding_logits", mutates_args=())
def sliding_logits(query: Tensor, key: Tensor, kernel: int, groups: int) -> Tensor:
    """Dot products of each pixel's query with the keys of its K x K neighbourhood (zero padded),
    per group of channels: (B, C, H, W) x 2 -> (B, G, K*K, H, W)."""
    b, c, h, w = query.shape
    q = _grouped(query, groups)
    kp = _grouped(_pad(key, kernel), groups)
    out = query.new_empty(b, groups, kernel * kernel, h, w)
    for k, dy, dx in _offsets(kernel):
        torch.sum(q * kp[..., dy : dy + h, dx : dx + w], dim=2, out=out[:, :, k])
    return out


@sliding_logits.register_fake
def _(query, key, kernel, groups):
    b, c, h, w = query.shape
    return query.new_empty(b, groups, kernel * kernel, h, w)


def _logits_setup(ctx, inputs, output):
    query, key, kernel, groups = inputs
    ctx.save_for_backward(query, key)
    ctx.kernel, ctx.groups = kernel, groups


def _logits_backward(ctx, grad_out):
    query, key = ctx.saved_tensors
    kernel, groups = ctx.kernel, ctx.groups
    b, c, h, w = query.shape
    p = kernel // 2
    q = _grouped(query, groups)
    kp = _grouped(_pad(key, kernel), groups)
    grad_q = torch.zeros_like(q)
    grad_kp = torch.zeros_like(kp)
    for k, dy, dx in _offsets(kernel):
        gl = grad_out[:, :, k : k + 1]
        grad_q.addcmul_(kp[..., dy : dy + h, dx : dx + w], gl)
        grad_kp[..., dy : dy + h, dx : dx + w].addcmul_(q, gl)
    grad_k = grad_kp[..., p : p + h, p : p + w].reshape(b, c, h, w)
    return grad_q.reshape(b, c, h, w), grad_k, None, None


sliding_logits.register_autograd(_logits_backward, setup_context=_logits_setup)


# One multiply-add per channel, pixel and neighbour: the cost of a depth-wise K x K convolution.
@register_flop_formula(torch.ops.nas_unified.sliding_aggregate)
def _aggregate_flops(value_shape, weight_shape, kernel, *args, out_shape=None, **kwargs) -> int:
    b, c, h, w = value_shape
    return 2 * b * c * h * w * kernel * kernel


@register_flop_formula(torch.ops.nas_unified.sliding_logits)
def _logits_flops(query_shape, key_shape, kernel, groups, *args, out_shape=None, **kwargs) -> int:
    b, c, h, w = query_shape
    return 2 * b * c * h * w * kernel * kernel


def neighbourhood_mask(kernel: int, height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """(1, 1, K*K, H, W): 0 where the neighbour lies inside the map, -inf where it is padding."""
    ones = torch.ones(1, 1, height, width, device=device, dtype=dtype)
    inside = sliding_logits(ones, ones, kernel, 1)
    return torch.zeros_like(inside).masked_fill_(inside == 0, float("-inf"))


def onnx_translations() -> dict:
    """torch.onnx.export's `custom_translation_table` for these ops: the same loop over the K x K offsets in
    standard ONNX operators (Pad, Slice, Mul, Add, ReduceSum; opset 18), so any ONNX runtime runs them. The
    functions are traced when exported: Python loops unroll and shapes (static in an export) are ints."""
    from onnxscript import opset18 as op

    def ints(*values):
        return op.Constant(value_ints=list(values))

    def grouped_padded(x, kernel, groups):  # (B, C, H, W) -> zero padded (B, G, C/G, H+2p, W+2p)
        _, c, h, w = x.shape
        p = kernel // 2
        padded = op.Pad(x, ints(0, 0, p, p, 0, 0, p, p))
        return op.Reshape(padded, ints(0, groups, c // groups, h + 2 * p, w + 2 * p))

    def neighbours(padded, k, kernel, h, w):  # the (B, G, C/G, H, W) window at offset k
        dy, dx = k // kernel, k % kernel
        return op.Slice(padded, ints(dy, dx), ints(dy + h, dx + w), ints(3, 4))

    def aggregate(value, weight, kernel: int):
        _, c, h, w = value.shape
        padded = grouped_padded(value, kernel, weight.shape[1])
        taps = op.Split(weight, axis=2, num_outputs=kernel * kernel) if kernel > 1 else [weight]  # (B, G, 1, H, W)
        out = None
        for k in range(kernel * kernel):
            term = op.Mul(neighbours(padded, k, kernel, h, w), taps[k])
            out = term if out is None else op.Add(out, term)
        return op.Reshape(out, ints(0, c, h, w))

    def logits(query, key, kernel: int, groups: int):
        _, c, h, w = query.shape
        q = op.Reshape(query, ints(0, groups, c // groups, h, w))
        padded = grouped_padded(key, kernel, groups)
        per_tap = [
            op.ReduceSum(op.Mul(q, neighbours(padded, k, kernel, h, w)), ints(2), keepdims=1)
            for k in range(kernel * kernel)
        ]
        return op.Concat(*per_tap, axis=2)

    return {
        torch.ops.nas_unified.sliding_aggregate.default: aggregate,
        torch.ops.nas_unified.sliding_logits.default: logits,
    }
