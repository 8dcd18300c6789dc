"""EVA-02 (Fang et al., 2023) backbone on timm's Eva model (rotary position embedding, SwiGLU MLP)."""
from __future__ import annotations

from typing import Any

import torch

from .checkpoint_filters import eva02_to_timm
from ..registry import register_model
from .foundation_vit import FoundationViT


def eva_embed(vit: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    """Token embedding of a timm ``Eva`` model (EVA-02, DINOv3): class (and storage) tokens prepended, the
    rotary embedding handed to the blocks as ``rope``.

    The embedding steps of timm's ``Eva.forward_intermediates``; timm has no public method for them alone
    (tests/test_models/test_timm_api.py pins that the two give the same features).
    """
    tokens, rope = vit._pos_embed(vit.patch_embed(x))
    return vit.norm_pre(tokens), {"rope": rope}


@register_model
class EVA02(FoundationViT):
    """EVA-02 ViT backbone (MIM-pretrained releases); see :class:`FoundationViT` for the arguments."""

    arch_zoo = {
        # A 4-block, 64-dim EVA-02 for tests and the CPU demo (not a released model).
        "tiny": ("eva02_tiny_patch14_224", dict(embed_dim=64, depth=4, num_heads=2, qkv_fused=False,
                                                scale_mlp=True), (0, 1, 2, 3)),
        "small": ("eva02_small_patch14_224", {}, (2, 5, 8, 11)),
        "base": ("eva02_base_patch14_224", {}, (2, 5, 8, 11)),
        "large": ("eva02_large_patch14_224", {}, (7, 11, 15, 23)),
    }
    # EVA-02 base/large keep q/k/v as separate projections and use a SwiGLU MLP (gate and value projections);
    # tiny/small fuse them (`attn.qkv`, decomposed as q, k, v, and a packed `mlp.fc1`).
    default_peft_targets = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.qkv", "attn.proj",
                            "mlp.fc1_g", "mlp.fc1_x", "mlp.fc1", "mlp.fc2")

    def _build_timm_model(self, model_name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
        # Without average pooling timm's Eva keeps the final LayerNorm as `norm` (applied to every token, as in
        # the EVA-02 release) instead of a pooled-feature `fc_norm`; `final_norm=True` then applies it.
        return super()._build_timm_model(model_name, dict(kwargs, global_pool=""))

    def _checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return eva02_to_timm(state_dict, self.vit)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return eva_embed(self.vit, x)
