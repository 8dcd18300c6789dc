"""Building a config's model from the registry of its ``default_scope`` (mmseg or mmdet)."""
from __future__ import annotations

import torch
from mmengine.config import Config

from ..config import check_config_types, load_config
from ..utils.errors import ConfigError

__all__ = ["build_model", "build_model_from_cfg", "head_state"]


def build_model_from_cfg(cfg: Config) -> torch.nn.Module:
    """``cfg.model`` built from the registry of the config's ``default_scope`` (mmseg or mmdet)."""
    scope = cfg.get("default_scope", "mmseg")
    if scope == "mmdet":
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    check_config_types(cfg)
    return MODELS.build(cfg.model)


def build_model(config: str, pretrained: bool) -> torch.nn.Module:
    """The config's model; with ``pretrained`` its backbone loads the base weights and takes the SVD split."""
    cfg = load_config(config)
    if not pretrained:
        cfg.model.backbone.init_cfg = None  # a full checkpoint will provide every weight
    elif not cfg.model.backbone.get("init_cfg"):
        raise ConfigError(f"{config} has no `model.backbone.init_cfg` checkpoint: merging needs the base weights "
                          "the adapter was trained on.")
    model = build_model_from_cfg(cfg)
    if pretrained:
        model.backbone.init_weights()
    return model


def head_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight outside the backbone (decode head, neck, ...): trained in full, so saved in full."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
