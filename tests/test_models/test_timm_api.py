"""Pins the few places where the backbones rely on timm beyond its public API.

``_embed`` calls timm's private ``_pos_embed`` (timm has no public method for the embedding steps alone), and the
Eva attention's ``qkv_bias_separate`` is set after construction (``Eva`` does not forward it to its blocks). These
tests fail if a timm upgrade changes either: our embedding + block loop must give exactly the features of timm's
public ``forward_intermediates``, and a SoMA-wrapped fused qkv must run its own forward.
"""
from __future__ import annotations

import pytest
import torch
from timm.layers import set_fused_attn, use_fused_attn

from soma.models import EVA02, DINOv2
from soma.models.backbones import DINOv3
from soma.peft import soma_layers

VARIANTS = {
    "dinov2": (DINOv2, dict(patch_size=14)),
    "dinov2-reg4": (DINOv2, dict(patch_size=14, register_tokens=4)),
    "eva02-tiny": (EVA02, dict(patch_size=14)),
    "eva02-fused-qkv": (EVA02, dict(patch_size=14, timm_kwargs=dict(qkv_fused=True))),
    "dinov3": (DINOv3, dict(patch_size=14)),
    "dinov3-qkvb": (DINOv3, dict(patch_size=14, qkv_bias=True)),
}


def build(variant: str, **kwargs) -> torch.nn.Module:
    """A tiny backbone with random, non-trivial weights everywhere (layer scales, biases, tokens)."""
    cls, options = VARIANTS[variant]
    torch.manual_seed(0)
    backbone = cls(arch="tiny", img_size=56, out_indices=(1, 3), out_scales=None, **options, **kwargs)
    with torch.no_grad():
        for param in backbone.vit.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return backbone.eval()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("norm", [False, True], ids=["raw", "final-norm"])
def test_our_embedding_and_block_loop_give_timms_intermediates(variant, norm):
    backbone = build(variant, final_norm=True, frozen=True)
    x = torch.randn(2, 3, 70, 56)  # not square: position embeddings and RoPE follow the grid
    with torch.no_grad():
        ours = backbone.forward_intermediates(x, norm=norm)
        theirs = backbone.vit.forward_intermediates(x, indices=[1, 3], norm=norm, output_fmt="NCHW",
                                                    intermediates_only=True)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("variant", ["eva02-fused-qkv", "dinov3-qkvb"])
def test_wrapped_fused_qkv_with_biases_runs_its_own_forward(variant):
    """timm's Eva attention would call F.linear on ``qkv.weight`` (skipping the adapter) without
    ``qkv_bias_separate``."""
    backbone = build(variant, peft=dict(type="SoMA", r=2))
    qkv = {name: layer for name, layer in soma_layers(backbone.vit).items() if name.endswith("attn.qkv")}
    assert len(qkv) == 4 and all(layer.base_layer.bias is None for layer in qkv.values())
    assert all(block.attn.q_bias is not None for block in backbone.vit.blocks)  # the case the flag is for
    calls = []
    handles = [layer.register_forward_hook(lambda module, args, out, name=name: calls.append(name))
               for name, layer in qkv.items()]
    with torch.no_grad():
        backbone(torch.randn(1, 3, 56, 56))
    for handle in handles:
        handle.remove()
    assert sorted(calls) == sorted(qkv)


def test_attention_is_fused_whatever_timms_global_setting_and_the_setting_is_restored():
    previous = use_fused_attn()
    set_fused_attn(False)
    try:
        backbone = build("dinov2")
        assert not use_fused_attn()  # the caller's setting is back
    finally:
        set_fused_attn(previous)
    assert all(block.attn.fused_attn for block in backbone.vit.blocks)
