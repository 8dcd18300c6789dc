"""DINOv3 (Siméoni et al., 2025, arXiv:2508.10104) backbone on timm's Eva model.

DINOv3 ViTs use patch 16 natively, rotary position embeddings (no absolute position embedding) and four
storage (register) tokens after the class token. timm builds them as ``vit_{small,base,large}_patch16_dinov3``
(q/k/v without bias) and ``*_dinov3_qkvb`` (with q/v biases); its ``eva.checkpoint_filter_fn`` reads both the
official facebookresearch/dinov3 layout and timm's own.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from timm.models.eva import checkpoint_filter_fn as eva_checkpoint_filter

from ...registry import register_model
from .eva02 import eva_embed
from .foundation_vit import FoundationViT

__all__ = ["DINOv3", "STORAGE_TOKENS", "dinov3_checkpoint_filter", "qv_bias_is_nonzero"]

STORAGE_TOKENS = 4  # every DINOv3 release (S/B/L and their qkvb twins) has 4
_OFFICIAL_QKV_BIAS = re.compile(r"^(blocks\.\d+\.attn\.)qkv\.bias(_mask)?$")
_TIMM_QV_BIAS = re.compile(r"^(blocks\.\d+\.attn\.)[qv]_bias$")


def qv_bias_is_nonzero(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a DINOv3 state dict (official or timm layout) has a non-zero query or value bias.

    The key bias is never used: official checkpoints mask it and timm fixes it at zero (a key bias adds the same
    number to every attention logit of a query, so softmax ignores it).
    """
    for key, value in state_dict.items():
        if _TIMM_QV_BIAS.match(key) and bool(value.any()):
            return True
        match = _OFFICIAL_QKV_BIAS.match(key)
        if match and not match.group(2):
            query, _, val = value.chunk(3, dim=-1)
            if bool(query.any()) or bool(val.any()):
                return True
    return False


def dinov3_checkpoint_filter(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """timm's Eva filter (official keys → timm keys, patch-kernel resampling) plus q/v-bias checks for DINOv3.

    The distilled DINOv3 releases carry all-zero q/k/v biases, so timm offers each model with (``*_qkvb``) and
    without them. Zero biases are dropped for a model without biases; non-zero ones are refused rather than
    silently dropped (timm's filter skips them with a print).

    Args:
        state_dict: official (``storage_tokens``, ``ls1.gamma``, ``attn.qkv.bias``) or timm layout.
        model: the timm Eva DINOv3 model the weights are for (SoMA-wrapped or not).

    Returns:
        The state dict in ``model``'s timm layout.

    Raises:
        ValueError: the file has an absolute position embedding (not DINOv3), non-zero q/v biases for a model
            built without them, or no biases for a model built with them.
    """
    if "pos_embed" in state_dict:
        raise ValueError("the weights have an absolute position embedding (`pos_embed`), which DINOv3 does not "
                         "have (it uses RoPE); is this a DINOv2/EVA-02 checkpoint?")
    has_bias_keys = any(_OFFICIAL_QKV_BIAS.match(k) or _TIMM_QV_BIAS.match(k) for k in state_dict)
    if getattr(model.blocks[0].attn, "q_bias", None) is not None:
        if not has_bias_keys:
            raise ValueError("the model has q/v biases (`qkv_bias=True`) but the weights have none; build the "
                             "backbone with `qkv_bias=False`.")
    elif has_bias_keys:
        if qv_bias_is_nonzero(state_dict):
            raise ValueError("the weights have non-zero q/v biases but the model has none; build the backbone "
                             "with `qkv_bias=True` (timm's *_dinov3_qkvb models).")
        state_dict = {k: v for k, v in state_dict.items()
                      if not (_OFFICIAL_QKV_BIAS.match(k) or _TIMM_QV_BIAS.match(k))}
    return eva_checkpoint_filter(state_dict, model)


@register_model
class DINOv3(FoundationViT):
    """DINOv3 ViT backbone; see :class:`FoundationViT` for the arguments.

    SoMA adapts the fused ``attn.qkv`` (as separate q, k and v slices, ``fused_splits``), ``attn.proj`` and the
    MLP's ``fc1``/``fc2``. In the ``qkv_bias`` models the q/v biases are attention parameters, not biases of
    an adapted Linear, so they stay frozen under SoMA (they are zero in the releases).

    Args:
        qkv_bias: build timm's ``*_dinov3_qkvb`` model (q/v biases). Default ``False``: the released weights'
            biases are zero, so both load them exactly.
        register_tokens: storage tokens; 4 (every DINOv3 release). Accepted so that a DINOv2-reg4 config
            swaps to DINOv3 by changing ``type`` only.
        **kwargs: :class:`FoundationViT` arguments.
    """

    arch_zoo = {
        # A 4-block, 64-dim DINOv3 for tests (not a released model).
        "tiny": ("vit_small_patch16_dinov3", dict(embed_dim=64, depth=4, num_heads=2), (0, 1, 2, 3)),
        "small": ("vit_small_patch16_dinov3", {}, (2, 5, 8, 11)),
        "base": ("vit_base_patch16_dinov3", {}, (2, 5, 8, 11)),
        "large": ("vit_large_patch16_dinov3", {}, (7, 11, 15, 23)),
    }
    default_peft_targets = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")

    def __init__(self, *args: Any, qkv_bias: bool = False, register_tokens: int = STORAGE_TOKENS,
                 **kwargs: Any) -> None:
        if qkv_bias not in (True, False):  # also accepts 0/1, as the converter's meta data writes it
            raise ValueError(f"`qkv_bias` must be a bool, got {qkv_bias!r}.")
        if register_tokens != STORAGE_TOKENS:
            raise ValueError(f"`register_tokens` must be {STORAGE_TOKENS} for DINOv3 (its storage tokens), "
                             f"got {register_tokens!r}.")
        self.qkv_bias = bool(qkv_bias)
        super().__init__(*args, **kwargs)

    def _build_timm_model(self, model_name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
        if self.qkv_bias:
            model_name = model_name.replace("_dinov3", "_dinov3_qkvb")
        return super()._build_timm_model(model_name, kwargs)

    def _checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dinov3_checkpoint_filter(state_dict, self.vit)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return eva_embed(self.vit, x)  # both are timm Eva models
