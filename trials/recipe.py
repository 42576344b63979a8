"""How a point is scored: the proxy recipe (resolution, width, data, epochs, seeds) and the stronger
reference recipe. Plain data: imports searchspace's spec and geometry only, never torch, so the commands
that read studies (which record their recipe) start fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from searchspace import ArchSpec, NasError
from searchspace.geometry import WINDOW_RULES, feature_sizes, proxy_geometry


@dataclass(frozen=True)
class ProxyRecipe:
    """How a point is scored. Every trial of a study uses the same recipe (one fidelity per front).

    `stem_stride` (default: the largest of 4, 2, 1 that leaves the last of 4 stages at least 2x2: Swin's
    4 at 224, 2 at 28 px, so the maps are 14/7/4/2, a quarter of 56/28/14/7) sets the stage maps.
    `windows`: how windows and halo blocks meet the smaller maps (geometry.WINDOW_RULES): 'clamp' keeps
    their size (a 7x7 window covers the 7/4/2 maps of stages 2-4, where it is global attention and a
    shift changes nothing); 'keep' scales them so each stage keeps its full-size number of windows.
    `seeds`: trainings per point (seeds seed, seed+1, ...; same data), scored by their mean top-1.
    """

    epochs: int = 2
    resolution: int = 28
    width: float = 0.25
    subset: int = 2000
    val_size: int = 500
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.25
    label_smoothing: float = 0.1
    seed: int = 0
    seeds: int = 1
    stem_stride: int | None = None
    windows: str = "clamp"

    def __post_init__(self):
        if self.stem_stride is None:
            stride = next((s for s in (4, 2, 1) if feature_sizes("patch", 4, self.resolution, s)[-1][0] >= 2), 1)
            object.__setattr__(self, "stem_stride", stride)
        if self.windows not in WINDOW_RULES:
            raise NasError(f"windows {self.windows!r}: not a window rule (rules: {', '.join(WINDOW_RULES)})")

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def key(self) -> dict:
        """What makes two recipes one fidelity: everything but the seeds."""
        return {k: v for k, v in self.as_dict().items() if k not in ("seed", "seeds")}

    def proxy_spec(self, spec: ArchSpec) -> ArchSpec:
        """The architecture this recipe trains: `spec` at the recipe's width, windows per its rule."""
        return proxy_geometry(spec.scaled(self.width), self.resolution, self.stem_stride, self.windows)

    def proxy_id(self, spec: ArchSpec) -> str:
        """Specs whose proxy networks are identical share this id, so one training scores them all."""
        return self.proxy_spec(spec).id_at(self.resolution, self.stem_stride)


# The reference nas calibrate and nas confirm train by default: stronger on every axis the default proxy cuts
# (maps 28/14/7/4 with the full-size number of windows per stage, 2.5x the images, twice the epochs, three
# times the held-out images): about 20x a default proxy trial.
REFERENCE_RECIPE = ProxyRecipe(epochs=4, subset=5000, val_size=1500, stem_stride=1, windows="keep")
