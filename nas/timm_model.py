"""`timm.create_model('nas_unified', config='model.yaml')`: exported architectures inside timm's world,
so timm's own training scripts can train them at full scale (pretrained=False: nothing downloads).

Registered when `nas` is imported (timm has no plug-in discovery); see the README for train.py.
"""

from __future__ import annotations

from timm.models import register_model

from searchspace import NasError

# timm's create_model arguments that build_model takes under the same name
TAKEN = ("num_classes", "img_size", "in_chans", "drop_rate", "global_pool", "features_only", "out_indices", "pretrained_cfg_overlay")


@register_model
def nas_unified(pretrained: bool = False, config=None, **kwargs):
    """A network of the unified design space from a model config, spec file, preset name or mapping."""
    if pretrained:
        raise NasError("nas_unified has no pretrained weights: an exported architecture is trained by you")
    if config is None:
        raise NasError("nas_unified needs config=: a model config from 'nas export', a spec file or a preset name")
    for weights_only in ("pretrained_cfg", "cache_dir"):  # where pretrained weights would come from
        kwargs.pop(weights_only, None)
    drop_path = kwargs.pop("drop_path_rate", 0.0) or 0.0
    unknown = set(kwargs) - set(TAKEN)
    if unknown:
        raise NasError(f"nas_unified does not take {', '.join(sorted(unknown))} (it takes {', '.join(sorted(TAKEN))}, drop_path_rate)")
    from searchspace import build_model  # here: timm may be loading for searchspace.model itself (see nas/__init__)

    return build_model(config, drop_path=drop_path, **kwargs)
