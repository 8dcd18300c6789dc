"""DINOv3 (Siméoni et al., 2025, arXiv:2508.10104) backbone on timm's Eva model.

DINOv3 ViTs use patch 16 natively, rotary position embeddings (no absolute position embedding) and four
storage (register) tokens after the class token. timm builds them as ``vit_{small,base,large}_patch16_dinov3``
(q/k/v without bias) and ``*_dinov3_qkvb`` (with q/v biases); its ``eva.checkpoint_filter_fn`` reads both the
official facebookresearch/dinov3 layout and timm's own.

The larger releases (``small_plus``, ``huge_plus``, ``7b``) replace the GELU MLP by a SwiGLU one: a gate
(``mlp.fc1_g``, the release's ``ffn.w1``) and a value projection (``mlp.fc1_x``, ``w2``) of the same width,
``silu(gate) * value``, then ``mlp.fc2`` (``w3``). The 7B has no q/k/v bias at all, a hidden width aligned to 64
(``ffn_ratio=3`` → 8192) and a second class-token norm used only in pretraining (``local_cls_norm``, dropped).

Out indices follow the DINOv3 release's dense-task convention: 4 evenly spaced blocks ending with the last,
``depth/4·k − 1`` (7B: 9, 19, 29, 39; H+: 7, 15, 23, 31). ViT-L keeps SoMA's ``(7, 11, 15, 23)``.

Default first adapted block (``peft.start_block`` when the config does not set it), one third of the depth as SoMA's
8 of 24 for ViT-L: S+ 4, H+ 11, 7B 13 (0 for the older archs, whose configs set it). Blocks before it run
without autograd, so this also bounds the activation memory (tools/analysis/memory_plan.py).
"""
from __future__ import annotations

from typing import Any

import torch

from .checkpoint_filters import dinov3_to_timm
from ..registry import register_model
from ...utils.errors import ConfigError
from .eva02 import eva_embed
from .foundation_vit import FoundationViT

__all__ = ["DINOv3", "STORAGE_TOKENS"]

STORAGE_TOKENS = 4  # every DINOv3 release (S/B/L and their qkvb twins) has 4

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
        "small_plus": ("vit_small_plus_patch16_dinov3", {}, (2, 5, 8, 11)),
        "huge_plus": ("vit_huge_plus_patch16_dinov3", {}, (7, 15, 23, 31)),
        "7b": ("vit_7b_patch16_dinov3", {}, (9, 19, 29, 39)),
        # The 7B's block (SwiGLU aligned to 64, no q/k/v bias) at 64 dims and 4 blocks, for tests (not released).
        "tiny_swiglu": ("vit_7b_patch16_dinov3", dict(embed_dim=64, depth=4, num_heads=2), (0, 1, 2, 3)),
    }
    # The GELU MLP's fc1/fc2 and the SwiGLU MLP's gate/value/output projections (S+, H+, 7B): names absent from an
    # arch are skipped, a target list matching nothing is an error.
    default_peft_targets = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")
    default_start_blocks = {"small_plus": 4, "huge_plus": 11, "7b": 13}
    timm_name_options = ("qkv_bias",)

    def __init__(self, *args: Any, qkv_bias: bool = False, register_tokens: int = STORAGE_TOKENS,
                 **kwargs: Any) -> None:
        if qkv_bias not in (True, False):  # also accepts 0/1, as the converter's meta data writes it
            raise ConfigError(f"`qkv_bias` must be a bool, got {qkv_bias!r}.")
        if register_tokens != STORAGE_TOKENS:
            raise ConfigError(f"`register_tokens` must be {STORAGE_TOKENS} for DINOv3 (its storage tokens), "
                             f"got {register_tokens!r}.")
        self.qkv_bias = bool(qkv_bias)
        super().__init__(*args, **kwargs)

    @classmethod
    def timm_model_name(cls, arch: str, qkv_bias: bool = False, **options: Any) -> str:
        """timm's ``*_dinov3_qkvb`` model with q/v biases, else ``*_dinov3``.

        Raises:
            ConfigError: ``qkv_bias`` for an arch timm has no biased model of (the 7B's release has no q/k/v biases).
        """
        name = super().timm_model_name(arch)
        if not qkv_bias:
            return name
        import timm

        biased = name.replace("_dinov3", "_dinov3_qkvb")
        if not timm.is_model(biased):
            raise ConfigError(f"`qkv_bias=True` has no model for DINOv3 arch {arch!r} (timm has no {biased}; the "
                              "release has no q/k/v biases): leave `qkv_bias` unset.")
        return biased

    def _checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dinov3_to_timm(state_dict, self.vit)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return eva_embed(self.vit, x)  # both are timm Eva models
