"""A crop that is not a multiple of the ViT patch is padded: said once, with the cost.
"""
from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config
from mmengine.logging import print_log



# ---------------------------------------------------------------------------------------------- patch size
_warned_padding: set[str] = set()


def _patch_size(backbone: Mapping[str, Any], scope: str) -> int | None:
    size = backbone.get("patch_size")
    if size is None:
        import mmdet.registry
        import mmseg.registry

        registry = mmdet.registry.MODELS if scope == "mmdet" else mmseg.registry.MODELS
        cls = registry.get(backbone.get("type")) if isinstance(backbone.get("type"), str) else None
        for klass in getattr(cls, "__mro__", ()):  # subclasses may take **kwargs: the default is further up
            parameter = inspect.signature(klass.__init__).parameters.get("patch_size")
            if parameter is not None:
                size = parameter.default
                break
    return size if isinstance(size, int) and size > 1 else None


def warn_patch_padding(cfg: Config) -> list[str]:
    """Warn (once per message) about crop sizes that are not a multiple of the backbone's patch size.

    The segmentor pads such inputs to the next multiple, so every image costs the compute of the padded size
    and part of each border patch is zeros. Returns the warnings given.
    """
    model = cfg.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("backbone"), Mapping):
        return []
    patch = _patch_size(model["backbone"], cfg.get("default_scope", "mmseg"))
    if patch is None:
        return []
    sizes = {"model.data_preprocessor.size (the training crop)": (model.get("data_preprocessor") or {}).get("size"),
             "model.test_cfg.crop_size (the sliding window)": (model.get("test_cfg") or {}).get("crop_size")}
    warnings = []
    for where, size in sizes.items():
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size)):
            continue
        height, width = size
        padded = (math.ceil(height / patch) * patch, math.ceil(width / patch) * patch)
        if padded == (height, width):
            continue
        cost = padded[0] * padded[1] / (height * width) - 1
        message = (f"{where} {height}x{width} is not a multiple of the backbone's patch size {patch}: every input "
                   f"is padded to {padded[0]}x{padded[1]}, {cost:.1%} more pixels computed on zero padding; a "
                   f"multiple of {patch} (e.g. {padded[0]}x{padded[1]} or "
                   f"{height // patch * patch}x{width // patch * patch}) avoids it.")
        warnings.append(message)
        if message not in _warned_padding:
            _warned_padding.add(message)
            print_log(message, logger="current", level=logging.WARNING)
    return warnings
