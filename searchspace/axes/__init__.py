"""The spatial token mixer's axes, one registered value per module (DESIGN §1.4): connectivities (window,
halo, sliding, global, deformable), dynamic weights (static, homogeneous, inhomogeneous, attention, hadamard)
and weight normalisations. A value of one's own: subclass a base, decorate it with its register_* function.

Imports torch, timm and searchspace's spec, geometry, cost, kernels and layers only.
"""

from ..spec import Option, register_connectivity, register_dynamic, register_weight_norm
from ._base import KERNEL, PROJECTION, REL_POS, Connectivity, DynamicWeight, WeightNorm, gated

# The built-in values register on import, in the order the spec lists them.
from . import window, halo, sliding, global_, deformable  # noqa: F401  isort: skip
from . import static, homogeneous, inhomogeneous, attention, hadamard  # noqa: F401  isort: skip
from . import weight_norms  # noqa: F401  isort: skip

__all__ = [
    "KERNEL",
    "PROJECTION",
    "REL_POS",
    "Connectivity",
    "DynamicWeight",
    "Option",
    "WeightNorm",
    "gated",
    "register_connectivity",
    "register_dynamic",
    "register_weight_norm",
]
