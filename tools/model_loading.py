"""Building a config's model for the checkpoint tools (export_backbone, extract_adapter, merge_adapter)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from soma.utils import ADAPTER_FORMAT, ConfigError, check_config_types, load_config  # noqa: E402

__all__ = ["ADAPTER_FORMAT", "build_model", "build_model_from_cfg", "head_state", "parse_config_input_output"]


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


def parse_config_input_output(description: str, input_name: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line shared by the checkpoint tools: ``CONFIG INPUT OUT [--force]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument(input_name)
    parser.add_argument("out", help="output file (never one of the inputs)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return parser.parse_args(argv)
