"""Which choices of a space a proxy's small maps cannot tell apart (DESIGN §3, proxy fidelity).

At 28 px the stage maps are 14/7/4/2: from stage 2 on a 7x7 window covers the whole map, so window attention
attends to every position there (as global attention does) and a shift changes nothing; a 7x7 sliding kernel
on a 4x4 map sees every position. `collapsed_axes` lists such choices for a space at a proxy geometry, and
says which of them collapse at the full size too (those are no proxy's fault). Imports searchspace only.
"""

from __future__ import annotations

from .geometry import feature_sizes, proxy_window


def collapsed_axes(space, img_size: int, stem_stride: int, windows: str = "clamp", full_size: int = 224) -> list[dict]:
    """One row per (stage, mixer, choice) that the proxy maps collapse: stage, section, dimension, value,
    the proxy and full-size map sides, what happens in words, and whether it collapses at full size too."""
    full = [h for h, _ in feature_sizes("patch", space.num_stages, full_size, 4)]
    proxy = [h for h, _ in feature_sizes("patch", space.num_stages, img_size, stem_stride)]
    rows: dict[tuple, dict] = {}

    def add(stage, section, dimension, value, what, at_full):
        key = (stage, section, dimension, value)
        rows.setdefault(key, {
            "stage": stage + 1, "section": section, "dimension": dimension, "value": value,
            "proxy_map": proxy[stage], "full_map": full[stage], "what": what, "also_at_full_size": at_full,
        })

    sections = ["mixer"] + (["second_mixer"] if space.dims.get("second_mixer") else [])
    for i in range(space.num_stages):
        n, f = proxy[i], full[i]
        for section in sections:
            for point in space.mixer_points(section, i, 1 << 20):
                c, k = point["connectivity"], point.get("kernel")
                if c in ("window", "halo"):
                    side = proxy_window(k, f, n, windows)
                    if side >= n:
                        what = (f"a {side}x{side} window covers the {n}x{n} map: it attends to every position, as global attention"
                                if c == "window" else f"one {side}x{side} halo block covers the {n}x{n} map: halo attention is global there")
                        add(i, section, f"{c} kernel", k, what, k >= f)
                    if c == "window" and point.get("shift") and side >= n:
                        add(i, section, "shift", True, "the window covers the map: a shift changes nothing", k >= f)
                    if c == "window" and point.get("shared_positions") is False and side >= n:
                        add(i, section, "shared_positions", False, "one window: per-window weights are shared weights", k >= f)
                elif c in ("sliding", "deformable") and k >= 2 * n - 1:
                    add(i, section, f"{c} kernel", k, f"a {k}x{k} neighbourhood on the {n}x{n} map sees every position", k >= 2 * f - 1)
                elif c == "global" and point.get("reduction", 1) > n:
                    r = point["reduction"]
                    add(i, section, "reduction", r, f"reduction {r} exceeds the {n}x{n} map: it reduces to one position", r > f)
    return sorted(rows.values(), key=lambda r: (r["stage"], r["section"], r["dimension"], str(r["value"])))
