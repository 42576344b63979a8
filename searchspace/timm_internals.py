"""Every use of timm's private API, in one place: what timm's own models use and timm does not export.
tests/test_library_internals.py fails loudly when one of these changes. Imports timm only.
"""

from __future__ import annotations

from collections.abc import Callable

from timm.models._features import feature_take_indices  # the indices forward_intermediates takes, as timm's models read them
from timm.models.swin_transformer import SwinTransformerBlock

__all__ = ["feature_take_indices", "swin_window_attention"]


def swin_window_attention(block: SwinTransformerBlock) -> Callable:
    """The (shifted) window attention of a timm Swin block on channels-last maps, without the block's norms and
    MLP: the reference benchmarks/design_space.py times our window mixer against."""
    return block._attn
