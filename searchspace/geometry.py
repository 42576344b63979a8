"""Where a network's pieces sit at one input size: the stage maps, the window, kernel, shift and reduction
a mixer really uses on its map, and the canonical form of a spec at that size (DESIGN §1.2).

Pure Python, shared by the spec (its id), the modules and their costs. Imports nothing from searchspace.
"""

from __future__ import annotations

import hashlib
import json


def out_size(size: int, kernel: int, stride: int) -> int:
    """A 'same'-padded convolution's output side."""
    return (size + 2 * ((kernel - 1) // 2) - kernel) // stride + 1


def stem_strides(stem_stride: int) -> tuple[int, int]:
    """The two 3x3 convolutions' strides of the overlapping stem."""
    return {4: (2, 2), 2: (2, 1), 1: (1, 1)}[stem_stride]


def stem_output(stem: str, size: tuple[int, int], stem_stride: int) -> tuple[int, int]:
    if stem == "patch":
        return tuple(s // stem_stride for s in size)
    first, last = stem_strides(stem_stride)
    return tuple(out_size(out_size(s, 3, first), 3, last) for s in size)


def feature_sizes(stem: str, num_stages: int, img_size=224, stem_stride: int = 4) -> list[tuple[int, int]]:
    """The feature-map size of every stage for an input of `img_size` (an int or (H, W))."""
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    sizes = [stem_output(stem, size, stem_stride)]
    for _ in range(num_stages - 1):
        sizes.append(tuple(-(-s // 2) for s in sizes[-1]))  # both downsamplings give ceil(s / 2)
    return sizes


def blocks(size: int, kernel: int) -> int:
    """Windows (or halo blocks) of side `kernel` along a side of `size` pixels, the last one padded."""
    return -(-size // kernel)


def local_geometry(mixer, feature_size: tuple[int, int], shifted: bool) -> tuple[int, int]:
    """(kernel, shift) a mixer really uses on a map: windows and halo blocks clamp to small maps, as Swin
    does, and a window that covers the whole map is not shifted."""
    h, w = feature_size
    kernel = mixer.kernel or 1
    if mixer.connectivity in ("window", "halo"):
        kernel = min(kernel, h, w)
    shift = kernel // 2 if (shifted and mixer.shift and kernel < min(h, w)) else 0
    return kernel, shift


def reduction_at(mixer, feature_size: tuple[int, int]) -> int:
    """PVT's key/value reduction, clamped so at least one position remains."""
    return min(mixer.reduction or 1, *feature_size)


def is_shifted(block: int) -> bool:
    return block % 2 == 1  # Swin shifts every second block of a stage


# --- the canonical form: settings that change nothing at this size take one value --------------------------
def canonical_mixer(mixer: dict, feature_size: tuple[int, int], depth: int) -> dict:
    """A mixer mapping (MixerSpec.to_dict form) with every setting the built module ignores on this map
    set to one value: a window or halo block larger than the map is the map; a window that covers the map
    (or a stage with no second block) shifts nothing; one window has one bank of static weights; a
    reduction larger than the map is the map."""
    out = dict(mixer)
    h, w = feature_size
    if out["connectivity"] in ("window", "halo"):
        out["kernel"] = min(out["kernel"], h, w)
    if out["connectivity"] == "window":
        if "shift" in out and (depth < 2 or not 2 <= out["kernel"] < min(h, w)):
            out["shift"] = False
        if "shared_positions" in out and out["kernel"] >= max(h, w):
            out["shared_positions"] = True
    if out["connectivity"] == "global" and "reduction" in out:
        out["reduction"] = min(out["reduction"], h, w)
    return out


def canonical(data: dict, img_size=224, stem_stride: int = 4) -> dict:
    """A spec mapping (ArchSpec.to_dict form) in canonical form for the network built at `img_size`: two
    specs that build the same network there have equal canonical forms. Name and notes are dropped."""
    body = {k: v for k, v in data.items() if k not in ("name", "notes")}
    sizes = feature_sizes(body.get("stem", "patch"), len(body["stages"]), img_size, stem_stride)
    stages = []
    for stage, size in zip(body["stages"], sizes):
        stage = dict(stage)
        for key in ("mixer", "second_mixer"):
            if key in stage:
                stage[key] = canonical_mixer(stage[key], size, stage["depth"])
        stages.append(stage)
    body["stages"] = stages
    return body


def digest(data: dict) -> str:
    """A short stable id of a mapping (sorted-key JSON, blake2b, 10 hex digits)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


# --- a proxy's geometry: smaller maps, and what windows do on them -----------------------------------------
# 'clamp': windows and halo blocks keep their size and clamp to maps smaller than them (as at any input size);
# 'keep': they shrink with the maps so that each stage keeps its full-size number of windows per side.
WINDOW_RULES = ("clamp", "keep")


def proxy_window(kernel: int, full: int, proxy: int, rule: str) -> int:
    """The side of a window (or halo block) on a proxy map of side `proxy`, for a full-size map of side `full`."""
    if rule == "clamp":
        return kernel
    windows = blocks(full, min(kernel, full))  # windows per side at full size
    return max(1, -(-proxy // windows))


def proxy_geometry(spec, img_size, stem_stride: int, rule: str, full_size: int = 224):
    """`spec` with its windows, halo blocks and halos sized for the proxy's maps by `rule` (unchanged for
    'clamp'). Sliding and deformable kernels keep their size: a kernel of 1 would mix no positions."""
    if rule == "clamp":
        return spec
    data = spec.to_dict()
    full = feature_sizes(spec.stem, len(spec.stages), full_size, 4)
    proxy = feature_sizes(spec.stem, len(spec.stages), img_size, stem_stride)
    for stage, (fh, _), (ph, _) in zip(data["stages"], full, proxy):
        for key in ("mixer", "second_mixer"):
            mixer = stage.get(key)
            if mixer and mixer["connectivity"] in ("window", "halo"):
                kernel = mixer["kernel"]
                mixer["kernel"] = proxy_window(kernel, fh, ph, rule)
                if "halo" in mixer:
                    mixer["halo"] = max(1, round(mixer["halo"] * mixer["kernel"] / min(kernel, fh)))
    return type(spec).model_validate(data)
