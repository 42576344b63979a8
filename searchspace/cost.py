"""The cost convention (DESIGN §2): parameters and multiply-accumulates (MACs) of one image.

"FLOPs" in the seed papers are MACs: one multiply-add = 1; convolutions, linears and the attention
products (q.k and attn.v) count, normalisation, activation and pooling do not. This module holds
the closed-form primitives the modules use to state their own cost, budget parsing, and an
independent measurement through `torch.utils.flop_counter.FlopCounterMode` for cross-checks.
Imports nothing above `searchspace`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import NasError

CONVENTION = "MACs = multiply-accumulates of one 224x224 image, 1000 classes (the papers' 'FLOPs')"


@dataclass(frozen=True)
class Cost:
    params: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)

    def __mul__(self, times: int) -> "Cost":
        return Cost(self.params * times, self.macs * times)

    def __iter__(self):  # params, macs = count(spec)
        return iter((self.params, self.macs))


def linear(cin: int, cout: int, tokens: int, bias: bool = True) -> Cost:
    return Cost(cin * cout + (cout if bias else 0), tokens * cin * cout)


def conv(cin: int, cout: int, kernel: int, out_pixels: int, groups: int = 1, bias: bool = True) -> Cost:
    per_output = (cin // groups) * kernel * kernel
    return Cost(cout * per_output + (cout if bias else 0), out_pixels * cout * per_output)


def norm(channels: int) -> Cost:
    """LayerNorm or BatchNorm: a weight and a bias per channel (BatchNorm's running stats are buffers)."""
    return Cost(2 * channels, 0)


def params(n: int) -> Cost:
    return Cost(n, 0)


def macs(n: int) -> Cost:
    return Cost(0, n)


# --- budgets ---------------------------------------------------------------------------------------
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*([KMGT]?)\s*(?:MACs?)?\s*$", re.IGNORECASE)


def parse_macs(text: str | float | int) -> int:
    """'4.5G', '800M', '4500000000', '4.5e9' -> MACs. Anything else (or <= 0) is a NasError."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _BUDGET.match(str(text))
        if not match:
            raise NasError(
                f"budget {text!r} is not a number of MACs: write e.g. 4.5G, 800M, 4500000000 or 4.5e9"
            )
        value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if not value > 0:
        raise NasError(f"budget {text!r} must be a positive number of MACs")
    return int(round(value))


def format_macs(n: float) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e8 else f"{n / 1e6:.1f}M"


def format_budget(n: int) -> str:
    """The shortest exact-enough name of a budget: 4.5G, 800M."""
    return f"{n / 1e9:g}G" if n >= 1e9 else f"{n / 1e6:g}M"


def format_params(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


# --- independent measurement -------------------------------------------------------------------------
def measure_macs(model, example) -> int:
    """MACs of `model(example)` counted by FlopCounterMode (total FLOPs / 2).

    FlopCounterMode counts nothing for CPU fused attention or grid_sample; without these formulas a
    cross-check silently drops attention (measured here: torch 2.14, CPU).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from . import kernels  # noqa: F401  (registers the formulas of our sliding kernels)

    aten = torch.ops.aten

    def sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs):
        flat = [(math.prod(s[:-3]), *s[-3:]) for s in (query, key, value)]  # any leading batch dims
        return sdpa_flop_count(*flat)

    def grid_sample(inp, grid, *args, out_shape=None, **kwargs):
        # one multiply-add per sampled channel value: the DCNv3 convention of the reference counts
        n, c = inp[:2]
        return 2 * n * c * grid[1] * grid[2]

    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: sdpa_cpu,
        aten.grid_sampler_2d: grid_sample,
    }
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad():
        model(example)
    return counter.get_total_flops() // 2
