"""A frozen base in bfloat16: frozen weights stored at half the bytes, trained tensors in float32.

A minor-component adapter needs no gradient for the frozen base, so the base needs no float32 master copy: its
weights (SoMA's residual ``W_res`` of the adapted layers included) can be stored in bfloat16 once the SVD split has
been taken in float64 from the loaded float32 weights. Adapters and trained biases stay float32, as the
optimizer needs them.

What it changes numerically. Under bfloat16 autocast (the GPU recipe's AMP), ``F.linear``/``conv`` cast float32
weights to bfloat16 at every call anyway: a weight stored in bfloat16 gives bit-identical matmuls. What does
change: layer scales and the class/storage tokens (elementwise, computed in float32 under autocast) are rounded to
bfloat16 once. Normalisation layers keep float32 parameters (a few thousand per block; CPU kernels need them in the
input's dtype, and CUDA autocast runs norms in float32). The backbone therefore runs under bfloat16 autocast
whatever the outer precision (:func:`frozen_autocast`), so the cast weights always meet bfloat16 activations.
Measured at init on the 7B's block at 64 dims (tests/test_peft/test_frozen_dtype.py): outputs within 5.4e-3 of
the float32 model's scale, where float32 weights under bfloat16 autocast are within 2.9e-3.

What it saves: 2 bytes per frozen parameter of storage (DINOv3-7B: 6.7B → 13.4 GB instead of 26.9 GB), and under
AMP autocast's per-call bfloat16 copies of float32 frozen weights, which a trained block saves for its backward
(without gradient checkpointing one copy per adapted matrix: 9 GB for the 7B's 27 trained blocks at any batch;
soma/analysis/memory_plan.py measures both).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn as nn

FROZEN_DTYPES = {"bfloat16": torch.bfloat16}
# Kept in float32 (see the module docstring): the parameters of these layers.
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)


def resolve_frozen_dtype(name: str | None) -> torch.dtype | None:
    """The torch dtype of a ``frozen_dtype`` option (``None`` or ``"float32"``: no cast).

    Raises:
        ValueError: any other name (the message lists the choices).
    """
    if name is None or name == "float32":
        return None
    if name not in FROZEN_DTYPES:
        raise ValueError(f"`frozen_dtype` must be None, 'float32' or one of {sorted(FROZEN_DTYPES)}, got {name!r}.")
    return FROZEN_DTYPES[name]


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORM_TYPES) or type(module).__name__.endswith("Norm")


def cast_frozen_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store every frozen floating-point parameter of ``model`` in ``dtype`` (in place), except those of
    normalisation layers; trainable parameters and buffers keep their dtype.

    Call it after the weights are loaded and the adapters initialised (SoMA's SVD reads the float32 weights).

    Returns:
        The bytes saved.
    """
    saved = 0
    for module in model.modules():
        if _is_norm(module):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad or not param.is_floating_point() or param.dtype == dtype:
                continue
            before = param.element_size()
            param.data = param.data.to(dtype)
            saved += param.numel() * (before - param.element_size())
    return saved


def frozen_autocast(x: torch.Tensor, dtype: torch.dtype | None) -> Any:
    """The autocast context a backbone with a ``dtype`` frozen base runs its forward in (none for ``None``)."""
    if dtype is None or x.is_meta:  # meta: shapes only (autocast has no meta device)
        return nullcontext()
    return torch.autocast(x.device.type, dtype=dtype)


def check_device_supports(dtype: torch.dtype | None, device: torch.device) -> None:
    """Refuse a bfloat16 frozen base on a CUDA GPU without bfloat16 (before Ampere).

    Raises:
        ValueError: the device cannot compute in ``dtype``.
    """
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"`frozen_dtype='bfloat16'` needs a GPU with bfloat16 (Ampere or newer); "
                         f"{torch.cuda.get_device_name(device)} has none: remove `frozen_dtype`.")
