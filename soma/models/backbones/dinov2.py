"""DINOv2 (Oquab et al., 2023) backbone on timm's VisionTransformer."""
from __future__ import annotations

from typing import Any

import torch

from .checkpoint_filters import dinov2_to_timm
from ..registry import register_model
from ...utils.errors import ConfigError
from .foundation_vit import FoundationViT


@register_model
class DINOv2(FoundationViT):
    """DINOv2 ViT backbone; see :class:`FoundationViT` for the arguments.

    ``arch="giant"`` is ViT-g/14 (40 blocks, width 1536, packed SwiGLU MLP; ``register_tokens=4`` builds the
    ``*_reg4`` release), with the out indices of the DINOv2 release's dense heads (9, 19, 29, 39: 4 evenly spaced
    blocks) and ``peft.start_block`` 13 by default.

    Args:
        register_tokens: 0, or 4 for the ``*_reg4`` releases (DINOv2 with registers).
        **kwargs: :class:`FoundationViT` arguments.
    """

    arch_zoo = {
        # A 4-block, 64-dim DINOv2 for tests and the CPU demo (not a released model).
        "tiny": ("vit_small_patch14_dinov2", dict(embed_dim=64, depth=4, num_heads=2), (0, 1, 2, 3)),
        # A 6-block, 128-dim ViT pretrained by the CPU demo (soma/demo/pretrain.py), used at patch 8.
        "demo": ("vit_small_patch14_dinov2", dict(embed_dim=128, depth=6, num_heads=4), (1, 3, 4, 5)),
        "small": ("vit_small_patch14_dinov2", {}, (2, 5, 8, 11)),
        "base": ("vit_base_patch14_dinov2", {}, (2, 5, 8, 11)),
        "large": ("vit_large_patch14_dinov2", {}, (7, 11, 15, 23)),
        "giant": ("vit_giant_patch14_dinov2", {}, (9, 19, 29, 39)),
    }
    default_peft_targets = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    timm_name_options = ("register_tokens",)
    # The giant's packed SwiGLU ``mlp.fc1`` holds the gate and the value projection (the release's ``w12``): SoMA
    # decomposes them as two matrices, as q/k/v; its first adapted block is a third of the depth (8 of 24 for L).
    default_fused_splits = {"giant": {"qkv": 3, "mlp.fc1": 2}}
    default_start_blocks = {"giant": 13}

    def __init__(self, *args: Any, register_tokens: int = 0, **kwargs: Any) -> None:
        if register_tokens not in (0, 4):
            raise ConfigError(f"`register_tokens` must be 0 or 4 (the DINOv2 releases), got {register_tokens}.")
        self.register_tokens = register_tokens
        super().__init__(*args, **kwargs)

    @classmethod
    def timm_model_name(cls, arch: str, register_tokens: int = 0, **options: Any) -> str:
        """timm's ``*_reg4_dinov2`` model with register tokens, else ``*_dinov2``."""
        name = super().timm_model_name(arch)
        return name.replace("_dinov2", "_reg4_dinov2") if register_tokens else name

    def _checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dinov2_to_timm(state_dict, self.vit)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        # The embedding steps of timm's `VisionTransformer.forward_intermediates`; timm has no public method for
        # them alone (tests/test_models/test_timm_api.py pins that the two give the same features).
        vit = self.vit
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        return tokens, {}
