"""Every use of timm's private API, in one place: what timm's own models use and timm does not export.
tests/test_library_internals.py fails loudly when one of these changes. Imports timm only.
"""

from timm.models._features import feature_take_indices  # the indices forward_intermediates takes, as timm's models read them

__all__ = ["feature_take_indices"]
