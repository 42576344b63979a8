"""`timm.create_model('nas_unified', config='model.yaml')`: exported architectures inside timm's world,
so timm's own training scripts can train them at full scale (pretrained=False: nothing downloads).

Registered when `nas` is imported (timm has no plug-in discovery); see the README for train.py.
"""

from __future__ import annotations

from timm.models import register_model

from searchspace import NasError, build_model


@register_model
def nas_unified(pretrained: bool = False, config=None, **kwargs):
    """A network of the unified design space from a model config, spec file, preset name or mapping."""
    if pretrained:
        raise NasError("nas_unified has no pretrained weights: an exported architecture is trained by you")
    if config is None:
        raise NasError("nas_unified needs config=: a model config from 'nas export', a spec file or a preset name")
    for ignored in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "drop_rate", "global_pool"):
        kwargs.pop(ignored, None)
    drop_path = kwargs.pop("drop_path_rate", 0.0) or 0.0
    allowed = {"num_classes", "img_size", "in_chans"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise NasError(f"nas_unified does not take {', '.join(sorted(unknown))} (it takes {', '.join(sorted(allowed))}, drop_path_rate)")
    return build_model(config, drop_path=drop_path, **kwargs)
