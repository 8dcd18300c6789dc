"""One conversion per family: a release/timm/transformers state dict → the state dict of the family's timm model.

The converters (:mod:`soma.convert.models`) and the backbones' ``_checkpoint_filter`` (when ``init_cfg`` names a
release file directly) call the same function, so a file loads the same way through either path:

* :func:`dinov2_to_timm`: transformers ``Dinov2Model``/``Dinov2WithRegistersModel`` keys are first rewritten into
  the official layout (:mod:`.hf_layouts`), then timm's ``vision_transformer.checkpoint_filter_fn`` (register
  tokens, the giant's ``mlp.w12``/``w3``, ``mask_token`` dropped, patch/position resampling).
* :func:`eva02_to_timm`: timm's ``eva.checkpoint_filter_fn``; the final LayerNorm is put where the model holds it.
* :func:`dinov3_to_timm`: transformers ``DINOv3ViTModel`` keys rewritten, q/v biases checked, then timm's
  ``eva.checkpoint_filter_fn``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from timm.models.eva import checkpoint_filter_fn as eva_checkpoint_filter
from timm.models.vision_transformer import checkpoint_filter_fn as vit_checkpoint_filter

from .hf_layouts import from_transformers

StateDict = dict[str, torch.Tensor]
_OFFICIAL_QKV_BIAS = re.compile(r"^(blocks\.\d+\.attn\.)qkv\.bias(_mask)?$")
_TIMM_QV_BIAS = re.compile(r"^(blocks\.\d+\.attn\.)[qv]_bias$")


def dinov2_to_timm(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> StateDict:
    """A DINOv2 state dict (official, timm or transformers layout) in ``model``'s timm layout."""
    return vit_checkpoint_filter(from_transformers(state_dict), model)


def eva02_to_timm(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> StateDict:
    """An EVA-02 state dict (official MIM or timm layout) in ``model``'s timm layout.

    timm's filter moves the release's final ``norm.*`` to ``fc_norm.*`` (and timm's own EVA-02 weights store it
    there); a model built without pooling (``global_pool=""``, as the backbone) holds that LayerNorm as ``norm``.
    """
    state_dict = eva_checkpoint_filter(dict(state_dict), model)
    if "fc_norm.weight" in model.state_dict():
        return state_dict
    return {("norm." + key[len("fc_norm."):] if key.startswith("fc_norm.") else key): value
            for key, value in state_dict.items()}


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


def dinov3_to_timm(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> StateDict:
    """A DINOv3 state dict (official, timm or transformers layout) in ``model``'s timm layout.

    The distilled DINOv3 releases carry all-zero q/k/v biases, so timm offers each model with (``*_qkvb``) and
    without them. Zero biases are dropped for a model without biases; non-zero ones are refused rather than
    silently dropped (timm's filter skips them with a print).

    Raises:
        ValueError: the file has an absolute position embedding (not DINOv3), non-zero q/v biases for a model
            built without them, or no biases for a model built with them.
    """
    state_dict = from_transformers(state_dict)
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
