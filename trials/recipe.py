"""How a point is scored: the proxy recipe (resolution, width, data, epochs, seeds) and the stronger
reference recipe. Plain data: imports searchspace's spec and geometry only, never torch, so the commands
that read studies (which record their recipe) start fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from searchspace import ArchSpec, NasError
from searchspace.geometry import WINDOW_RULES, feature_sizes, proxy_geometry


HELD_OUT_FROM = ("test", "train")
# What recipes did before these fields existed (and rung_val_size: val_size): a stored recipe without them takes
# these values (trials.record.stored_recipe), and a recipe at them keeps its earlier key (ProxyRecipe.key).
EARLIER = {"held_out_from": "train", "clip_grad": 0.0, "bn_batches": 0}


@dataclass(frozen=True)
class ProxyRecipe:
    """How a point is scored. Every trial of a study uses the same recipe (one fidelity per front).

    `stem_stride` (default: the largest of 4, 2, 1 that leaves the last of 4 stages at least 2x2: Swin's
    4 at 224, 2 at 28 px, so the maps are 14/7/4/2, a quarter of 56/28/14/7) sets the stage maps.
    `windows`: how windows and halo blocks meet the smaller maps (geometry.WINDOW_RULES): 'clamp' keeps
    their size (a 7x7 window covers the 7/4/2 maps of stages 2-4, where it is global attention and a
    shift changes nothing); 'keep' scales them so each stage keeps its full-size number of windows. 'keep' is
    the default, chosen by calibration (README "Proxy fidelity": seeds agree better, less noise).
    `seeds`: trainings per point (seeds seed, seed+1, ...; same data), scored by their mean top-1.
    `val_size` held-out images (the data's test split, the same for every seed) score the end of training;
    the first `rung_val_size` of them score a scheduler's rungs, where only a rank is decided (README "Proxy
    noise": at 75% top-1, 5000 images leave a standard error of 0.6 points, 500 left 1.9).
    `held_out_from`: "test", the data's test split (a fixed draw from the training images where it has none);
    "train", what earlier versions did: held out from the training draw, with the seed (so seeds differed in it).
    `clip_grad` (gradient norm, 0: none) and `bn_batches` (BatchNorm statistics recomputed on that many
    training batches before each evaluation, 0: the running averages) make the networks that swung most
    between seeds train alike (README "Proxy noise").
    """

    epochs: int = 2
    resolution: int = 28
    width: float = 0.25
    subset: int = 2000
    val_size: int = 5000
    rung_val_size: int = 500
    held_out_from: str = "test"
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.25
    label_smoothing: float = 0.1
    clip_grad: float = 1.0
    bn_batches: int = 16
    seed: int = 0
    seeds: int = 1
    stem_stride: int | None = None
    windows: str = "keep"

    def __post_init__(self):
        if self.stem_stride is None:
            stride = next((s for s in (4, 2, 1) if feature_sizes("patch", 4, self.resolution, s)[-1][0] >= 2), 1)
            object.__setattr__(self, "stem_stride", stride)
        if self.rung_val_size > self.val_size:
            object.__setattr__(self, "rung_val_size", self.val_size)
        if self.held_out_from not in HELD_OUT_FROM:
            raise NasError(f"held_out_from {self.held_out_from!r}: not a held-out source (sources: {', '.join(HELD_OUT_FROM)})")
        if self.windows not in WINDOW_RULES:
            raise NasError(f"windows {self.windows!r}: not a window rule (rules: {', '.join(WINDOW_RULES)})")

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, short: bool = False) -> str:
        """The recipe in one line (`short`: what tells fidelities apart, for tables)."""
        maps = "/".join(str(h) for h, _ in feature_sizes("patch", 4, self.resolution, self.stem_stride))
        if short:
            return f"{self.epochs} ep x {self.subset} img, maps {maps}, windows {self.windows}, width x{self.width:g}"
        seeds = f", {self.seeds} seeds from {self.seed}" if self.seeds > 1 else f", seed {self.seed}"
        return (
            f"{self.epochs} epochs on {self.subset} images ({self.val_size} held out, {self.rung_val_size} at rungs) at {self.resolution}px (maps {maps}, "
            f"windows {self.windows}), width x{self.width:g}, batch {self.batch_size}, lr {self.lr:g}{seeds}"
        )

    @property
    def key(self) -> dict:
        """What makes two recipes one fidelity: everything but the seeds. A field added since recipes were first
        stored is left out where it holds what every recipe did before it (EARLIER), so such a recipe keeps its
        key, and the calibrations measured on it still hold."""
        key = {k: v for k, v in self.as_dict().items() if k not in ("seed", "seeds")}
        earlier = {**EARLIER, "rung_val_size": self.val_size}
        for field, value in earlier.items():
            if key[field] == value:
                del key[field]
        return key

    def proxy_spec(self, spec: ArchSpec) -> ArchSpec:
        """The architecture this recipe trains: `spec` at the recipe's width, windows per its rule."""
        return proxy_geometry(spec.scaled(self.width), self.resolution, self.stem_stride, self.windows)

    def proxy_id(self, spec: ArchSpec) -> str:
        """Specs whose proxy networks are identical share this id, so one training scores them all."""
        return self.proxy_spec(spec).id_at(self.resolution, self.stem_stride)


# The reference nas calibrate and nas confirm train by default, sized for 2 CPU cores: five times the training
# steps of the default proxy (2.5x the images, twice the epochs), the same held-out images, and every
# stage's full-size number of windows; about 5x a default proxy trial. On a GPU, raise the resolution too.
REFERENCE_RECIPE = ProxyRecipe(epochs=4, subset=5000, windows="keep")
# The benchmark table's (nas bench build): the default proxy on half its training images, so a point trains in
# about half the time while the rungs (0.5 and 1 epoch) and the held-out images stay a search's.
BENCH_RECIPE = ProxyRecipe(subset=1000)
# A proxy for a GPU (`--proxy-base gpu`, `--gpus-per-trial 0.25` packs four on one): half the full size (112 px,
# stem stride 4: maps 28/14/7/4, a 7-window covers stage 4 only, as at 224), half the width, ten times the
# images and a larger batch. Run benchmarks/gpu.py on a GPU to see its seconds per trial.
GPU_RECIPE = ProxyRecipe(resolution=112, width=0.5, subset=20000, batch_size=128)
BASES = {"cpu": ProxyRecipe(), "gpu": GPU_RECIPE}  # the recipes --proxy-base names
# The default and reference recipes before the held-out images came from the test split (500 and 1250 held out,
# drawn with the seed; no clipping; BatchNorm's running averages): the shipped calibrations measured these.
EARLIER_DEFAULT = ProxyRecipe(val_size=500, rung_val_size=500, **EARLIER)
EARLIER_REFERENCE = ProxyRecipe(epochs=4, subset=5000, val_size=1250, rung_val_size=1250, **EARLIER)
