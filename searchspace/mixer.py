"""One spatial token mixer for every point of DESIGN §1.2: y_i = W_out sum_{j in S(i)} w_ij (.) (W_in x_j).

The axes are registered values (`searchspace.axes`): the spec's connectivity, with its dynamic weight, builds
the parameters and picks the kernel that aggregates, once, in __init__; its weight normalisation normalises.
`mixer_cost` beside the class states the same module's parameters and MACs in closed form, from the same
values. Tensors are channels-last. Imports torch and searchspace's spec, cost, layers and axes only.
"""

from __future__ import annotations

from torch import Tensor, nn

from . import cost
from .axes import Connectivity
from .layers import LastDimBatchNorm, projection, projection_cost
from .spec import CONNECTIVITIES, WEIGHT_NORMS, MixerSpec


def sampling_set(spec: MixerSpec, dim: int, feature_size: tuple[int, int], shifted=False, value_proj=True) -> Connectivity:
    """The spec's connectivity on its map, holding its dynamic weight."""
    return CONNECTIVITIES[spec.connectivity](spec, dim, feature_size, shifted, value_proj)


class TokenMixer(nn.Module):
    """A spatial token mixer; channels-last in and out.

    dim: the channels it mixes. feature_size: the map it is built for (windows clamp to it).
    shifted: this block is one of the shifted ones (Swin alternates). value_proj: apply W_in
    (a parallel branch may already have projected its input). out_dim: channels of W_out, or
    None for no output projection.
    """

    def __init__(
        self,
        spec: MixerSpec,
        dim: int,
        feature_size: tuple[int, int],
        *,
        shifted: bool = False,
        value_proj: bool = True,
        out_dim: int | None = -1,
    ):
        super().__init__()
        self.spec = spec
        self.dim, self.heads = dim, spec.heads
        self.head_dim = dim // spec.heads
        self.feature_size = feature_size
        self.connectivity = sampling_set(spec, dim, feature_size, shifted, value_proj)
        self.kernel, self.shift = self.connectivity.kernel, self.connectivity.shift
        self.weight_norm = WEIGHT_NORMS[spec.weight_norm]()
        self.connectivity.build(self)  # W_in, where the weights come from, the sampling set's own tables

        # After the aggregation: DWNet's BN + ReLU, then W_out.
        conv_bn = spec.projection == "conv_bn"
        self.post = nn.Sequential(LastDimBatchNorm(dim), nn.ReLU()) if conv_bn else nn.Identity()
        out_dim = dim if out_dim == -1 else out_dim
        self.proj = nn.Identity() if out_dim is None else projection(spec.projection or "linear", dim, out_dim, act=False)
        self.init_weights()

    def init_weights(self) -> None:
        """Where the seeds' code starts differently from the network's truncated-normal linears (the network
        calls this after its own init)."""
        self.connectivity.init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.mix(x))

    def mix(self, x: Tensor, value_gate: Tensor | None = None) -> Tensor:
        """Aggregate (before W_out); `value_gate` (B, C) scales the values (MixFormer's channel interaction)."""
        return self.post(self.connectivity.aggregate(self, x, value_gate))


def mixer_cost(
    spec: MixerSpec,
    dim: int,
    feature_size: tuple[int, int],
    *,
    shifted: bool = False,
    value_proj: bool = True,
    out_dim: int | None = -1,
) -> cost.Cost:
    """Parameters and MACs of `TokenMixer(spec, dim, feature_size, ...)` on one image, in closed form."""
    total = sampling_set(spec, dim, feature_size, shifted, value_proj).cost()
    if spec.projection == "conv_bn":
        total += cost.norm(dim)
    out_dim = dim if out_dim == -1 else out_dim
    if out_dim is not None:
        total += projection_cost(spec.projection or "linear", dim, out_dim, feature_size[0] * feature_size[1])
    return total
