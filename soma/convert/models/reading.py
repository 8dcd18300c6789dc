"""Reading a weight file (a release/timm file or a transformers ``save_pretrained`` folder) down to its tensors."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from soma.models.backbones.hf_layouts import (check_transformers_config, read_transformers_folder,
                                              transformers_layout)
from soma.utils.checkpoint import load_weights

StateDict = dict[str, torch.Tensor]
# Containers release files put around the weights, outermost first (timm's EVA filter prefers the EMA weights).
CONTAINER_KEYS = ("model_ema", "model", "module", "state_dict")


def read_source(src: Path) -> Any:
    """The loaded weight file, or the weights of a transformers ``save_pretrained`` folder.

    Raises:
        FileNotFoundError: ``src`` does not exist, or is a folder without ``model.safetensors``.
        ValueError: a transformers ``config.json`` (in the folder, or next to a ``.safetensors`` file) whose model
            type or settings the timm models do not have.
    """
    if src.is_dir():
        return read_transformers_folder(src)
    weights = load_weights(src)
    if src.suffix == ".safetensors" and isinstance(weights, Mapping) and transformers_layout(weights):
        check_transformers_config(src.parent / "config.json")
    return weights


def unwrap(obj: Any) -> StateDict:
    """The tensor dict inside a loaded file, without the containers release files put around it.

    Raises:
        ValueError: the file holds no dict of tensors.
    """
    for key in CONTAINER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"the file holds no state dict of tensors (looked inside {list(CONTAINER_KEYS)}); "
                         f"found {found}.")
    others = sorted(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if others:
        print(f"ignoring {len(others)} non-tensor entries: {others[:8]}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
