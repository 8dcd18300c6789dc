"""Loading a trained model's checkpoint (from training or the adapter tools), merged or not, strictly."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from soma.peft import adapter_layers, is_adapter_key, unload_adapters
from soma.utils.checkpoint import load_trusted_checkpoint

from .checked import load_state_dict_checked
from .mismatch import checkpoint_state_dict


def read_state_dict(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model weights (``module.`` prefixes of DDP removed) and the meta data of a checkpoint written by
    training or by the adapter tools."""
    loaded = load_trusted_checkpoint(checkpoint)
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    return checkpoint_state_dict(loaded), meta if isinstance(meta, dict) else {}


def is_merged_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict holds plain (merged) weights: no adapter tensors of any method at all."""
    return not any(is_adapter_key(k) for k in state)


def load_trained_weights(model: torch.nn.Module, checkpoint: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load ``checkpoint`` into ``model`` strictly, unmerged or merged; returns the checkpoint's meta data.

    A merged checkpoint (tools/merge_adapter.py) has plain ``nn.Linear`` weights where the config's model has
    adapted layers (SoMA, DoRA, ...), so those layers are unwrapped first: the merged model then has no adapter
    overhead either.
    Anything else that does not fit is refused (:mod:`soma.weights`), unless not ``strict``.
    """
    loaded = load_trusted_checkpoint(checkpoint)
    state = checkpoint_state_dict(loaded)
    plain_names = {f"{name}.weight" for name in adapter_layers(model)}  # an adapted layer's weight once merged
    if plain_names and is_merged_state(state) and plain_names & set(state):
        unload_adapters(model, merge=False)  # the adapters are already folded into the saved weights
    load_state_dict_checked(model, loaded, checkpoint, strict=strict)
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    return meta if isinstance(meta, dict) else {}
