"""The small base classes of the mixer's axes: a connectivity (the sampling set S(i)), a dynamic weight (where
w_ij come from) and a weight normalisation; a value is a subclass registered by name (DESIGN §1.4).

Imports torch, timm and searchspace's spec, geometry, cost and layers only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from .. import cost
from ..geometry import local_geometry
from ..layers import projection, projection_cost
from ..spec import DYNAMICS, MixerSpec, Option

# Fields several values read, declared once here.
KERNEL = Option(int, ge=1, le=31, description="window / neighbourhood / halo block side K")
REL_POS = Option(bool, default=True, only=("attention",), words={True: "rel-pos"})
PROJECTION = Option(Literal["linear", "conv_bn"], default="linear", words={"conv_bn": "conv-BN"})


class Connectivity:
    """A sampling set S(i): which positions each pixel aggregates and where they sit on a map, the kernels that
    aggregate over them, and what it all costs in closed form.

    A subclass declares its `name`, the mixer fields it reads (`options`), its `kernels` (a weight form - see
    DynamicWeight - or one dynamic weight's name -> the function that aggregates with such weights) and the
    dynamic weights it refuses, by name or form, with the reason (`why_not`). A pair is a point where a kernel
    serves the dynamic weight and neither refuses the other.

    One instance serves one mixer on one map, with its dynamic weight: `build`, `init_weights` and `cost` do
    the dynamic weight's part, then the set's own (a subclass may take a part over: DCNv3 predicts its weights
    with its offsets). Parameters live on the mixer under the seeds' names, so checkpoints keep their keys.
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    kernels: ClassVar[dict[str, Callable]] = {}
    why_not: ClassVar[dict[str, str]] = {}
    centred: ClassVar[bool] = False  # a K x K neighbourhood centred on its pixel: K must be odd

    def __init__(self, spec: MixerSpec, dim: int, feature_size: tuple[int, int], shifted: bool, value_proj: bool):
        self.spec, self.dim, self.feature_size = spec, dim, feature_size
        self.heads, self.head_dim = spec.heads, dim // spec.heads
        self.pixels = feature_size[0] * feature_size[1]
        self.kernel, self.shift = local_geometry(spec, feature_size, shifted)
        self.taps = self.kernel * self.kernel  # positions one filter weighs
        self.dynamic: DynamicWeight = DYNAMICS[spec.dynamic](spec, dim, self, value_proj)
        self._kernel = self.kernels.get(spec.dynamic) or self.kernels[self.dynamic.form]  # chosen once
        self._cache: dict = {}

    @classmethod
    def describe(cls, spec: MixerSpec) -> str:
        """Where the mixer looks, in words: 'sliding 7x7'."""
        return f"{cls.name} {spec.kernel}x{spec.kernel}" if spec.kernel else cls.name

    @property
    def static_shape(self) -> tuple[int, ...]:
        """The learned weights of a static filter bank: one per group and tap."""
        return (self.heads, self.taps)

    def input_tokens(self) -> int:
        """Positions the dynamic weight's input projections run on."""
        return self.pixels

    def build(self, mixer: nn.Module) -> None:
        self.dynamic.build(mixer)

    def init_weights(self, mixer: nn.Module) -> None:
        self.dynamic.init_weights(mixer)

    def cost(self) -> cost.Cost:
        """Parameters and MACs of everything but the mixer's output projection, on one image."""
        return self.dynamic.cost()

    def aggregate(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        """sum_{j in S(i)} w_ij (.) (W_in x_j) on channels-last x; `gate` (B, C) scales the values."""
        return self._kernel(self, mixer, x, gate)

    def cached(self, key, make: Callable[[], Tensor]) -> Tensor:
        """A mask or grid that depends only on the map size and device, made once (not while torch.export or
        torch.compile traces: what it makes then belongs to the trace, and would break the eager model after)."""
        if key in self._cache:
            return self._cache[key]
        made = make()
        if not torch.compiler.is_compiling():
            self._cache[key] = made
        return made


class DynamicWeight:
    """Where the weights w_ij come from: parameters or a generator, and their cost in closed form.

    A subclass declares its `name`, the mixer fields it reads (`options`), the weight normalisations it admits
    (`weight_norms`, the first the default), the connectivities it refuses with the reason (`why_not`), and
    the `form` its weights take for the connectivity's kernels, with the method that gives them:
      'static'      learned, the same for every sample: filters(mixer, v) -> connectivity.static_shape
      'per_sample'  one filter per group and sample, shared by positions: filters(mixer, v) -> (B, G, taps)
      'per_pixel'   a filter per pixel: pixel_weights(mixer, x, gate) -> ((B, G, taps, H, W), values)
      'attention'   softmax(q.k / sqrt(d)): qkv(mixer, x, gate) -> q, k, v
    (v and values channels-last). One instance serves one mixer, beside its connectivity.
    """

    name: ClassVar[str]
    form: ClassVar[str]
    weight_norms: ClassVar[tuple[str, ...]]
    options: ClassVar[dict[str, Option]] = {}
    why_not: ClassVar[dict[str, str]] = {}

    def __init__(self, spec: MixerSpec, dim: int, connectivity: Connectivity, value_proj: bool):
        self.spec, self.dim, self.heads = spec, dim, spec.heads
        self.connectivity, self.value_proj = connectivity, value_proj

    def build(self, mixer: nn.Module) -> None:
        """Register W_in and the weights' parameters on the mixer."""
        raise NotImplementedError

    def init_weights(self, mixer: nn.Module) -> None:
        """Where the seeds start differently from the network's truncated-normal linears."""

    def cost(self) -> cost.Cost:
        raise NotImplementedError

    def ghost(self, mixer: nn.Module, v: Tensor) -> Tensor | None:
        """ELSA's ghost head: a static depth-wise filter added to a sliding aggregation of NCHW values v."""
        return None

    # W_in of convolution-like weights: a projection of the values (a parallel branch may have made it already)
    def build_values(self, mixer: nn.Module) -> None:
        mixer.value = projection(self.spec.projection, self.dim, self.dim, act=True) if self.value_proj else nn.Identity()

    def values_cost(self) -> cost.Cost:
        return projection_cost(self.spec.projection, self.dim, self.dim, self.connectivity.pixels) if self.value_proj else cost.Cost()

    def values(self, mixer: nn.Module, x: Tensor, gate: Tensor | None) -> Tensor:
        return gated(mixer.value(x), gate)


class WeightNorm:
    """How a filter's weights are normalised over its positions (ELSA's study). `outside` (True = not a member,
    e.g. the other region of a shifted window) is left out of the normalisation and zeroed. No parameters, and
    no cost: normalisations are not counted (DESIGN §2)."""

    name: ClassVar[str]

    def __call__(self, weights: Tensor, dim: int, outside: Tensor | None = None) -> Tensor:
        raise NotImplementedError


def gated(v: Tensor, gate: Tensor | None) -> Tensor:
    """Channels-last values scaled by a (B, C) gate (MixFormer's channel interaction)."""
    return v if gate is None else v * gate[:, None, None, :]
