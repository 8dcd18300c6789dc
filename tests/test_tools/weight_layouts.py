"""Shared by the converter tests: tiny random timm models and saving their weights in a given file format."""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

StateDict = dict[str, torch.Tensor]
_MODELS: dict[tuple, torch.nn.Module] = {}


def timm_layout(state: StateDict) -> StateDict:
    """timm's own layout: the state dict as it is."""
    return dict(state)


def random_timm_model(name: str, img_size: int, **kwargs) -> torch.nn.Module:
    """A tiny timm model (cached per arguments) with random weights everywhere, layer scales and biases too."""
    key = (name, img_size, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, dynamic_img_size=True,
                                  **kwargs)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.05 * torch.randn_like(param))
        _MODELS[key] = model.eval()
    return _MODELS[key]


def save_state(state: dict, path: Path, suffix: str) -> Path:
    """``state`` saved as ``path`` with ``suffix`` (``.safetensors`` or a torch file); returns the file."""
    path = path.with_suffix(suffix)
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path
