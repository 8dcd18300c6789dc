"""Comparing a checkpoint's tensors with a model's: what is missing, unexpected or of another shape.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn


from soma.utils.errors import UserError


SHOWN = 3  # names shown per kind of mismatch
NON_STRICT_HINT = ("Loading it anyway would evaluate a partly random model; --non-strict loads only the "
                   "tensors that fit.")

class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint whose tensors do not fit the model it is loaded into."""


@dataclass
class StateDictMismatch:
    """What differs between a model's state dict and a checkpoint's, by tensor name."""

    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # ckpt, model
    total: int = 0  # tensors of the model

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    @property
    def loaded(self) -> int:
        return self.total - len(self.missing) - len(self.wrong_shape)

    def summary(self) -> str:
        """Counts and the first names of each kind, e.g. ``48 missing (e.g. a, b, c)``."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (e.g. {', '.join(self.missing[:SHOWN])})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (e.g. {', '.join(self.unexpected[:SHOWN])})")
        if self.wrong_shape:
            shown = ", ".join(f"{name}: {tuple(ckpt)} in the checkpoint vs {tuple(own)} in the model"
                              for name, ckpt, own in self.wrong_shape[:SHOWN])
            parts.append(f"{len(self.wrong_shape)} of another shape (e.g. {shown})")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- comparing
def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose state dict a checkpoint holds: without DDP and test-time-augmentation wrappers."""
    from mmengine.model import BaseTTAModel, is_model_wrapper

    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def checkpoint_state_dict(checkpoint: Any) -> dict[str, Any]:
    """The weights of a loaded checkpoint (under ``state_dict``, or the dict itself), ``module.`` stripped."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f"the checkpoint holds a {type(checkpoint).__name__}, not a state dict.")
    state = checkpoint.get("state_dict", checkpoint)
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def compare_state_dict(model: nn.Module | Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> StateDictMismatch:
    """Names and shapes of ``model``'s state dict (or of a state dict) against ``state`` (BatchNorm's
    ``num_batches_tracked`` counters are not compared, as in mmengine)."""
    expected = model.state_dict() if isinstance(model, nn.Module) else model
    own = {k: tuple(v.shape) for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    theirs = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()
              if not k.endswith("num_batches_tracked")}
    return StateDictMismatch(
        missing=[k for k in own if k not in theirs],
        unexpected=[k for k in theirs if k not in own],
        wrong_shape=[(k, theirs[k], own[k]) for k in own if k in theirs and theirs[k] is not None
                     and theirs[k] != own[k]],
        total=len(own))
