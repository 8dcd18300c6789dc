"""The released full fine-tuning baseline: only the blocks' attention/MLP weights train
(``freeze_norms_and_embeddings``)."""
import pytest
import torch
import torch.nn as nn

from soma.models import EVA02, DINOv2, DINOv3

# DINOv2 tiny (4 blocks): per block qkv, proj, fc1, fc2, each with weight and bias.
DINOV2_TRAINED = {f"blocks.{i}.{layer}.{leaf}" for i in range(4)
                  for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2") for leaf in ("weight", "bias")}


def trainable(backbone: nn.Module) -> set[str]:
    return {name for name, p in backbone.vit.named_parameters() if p.requires_grad}


def test_dinov2_trains_exactly_the_attention_and_mlp_weights():
    backbone = DINOv2(arch="tiny", img_size=64, frozen=False, freeze_norms_and_embeddings=True)
    assert trainable(backbone) == DINOV2_TRAINED
    names = {name for name, _ in backbone.vit.named_parameters()}
    frozen = names - DINOV2_TRAINED
    # what the released baseline names (norm1/norm2, ls1/ls2, pos_embed, patch_embed), and the cls token
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.norm1.weight",
            "blocks.0.norm2.bias", "blocks.3.ls1.gamma", "blocks.3.ls2.gamma"} <= frozen
    assert all(n.startswith(("cls_token", "pos_embed", "patch_embed.")) or
               n.rpartition(".")[0].endswith(("norm1", "norm2", "ls1", "ls2")) for n in frozen), sorted(frozen)
    assert backbone._find_first_trained_block() == 0
    full = DINOv2(arch="tiny", img_size=64, frozen=False)
    assert all(p.requires_grad for p in full.parameters())  # the option is off by default


@pytest.mark.parametrize("cls", [EVA02, DINOv3], ids=["EVA02", "DINOv3"])
def test_other_families_freeze_their_norms_layer_scales_and_stem(cls):
    backbone = cls(arch="tiny", img_size=64, frozen=False, freeze_norms_and_embeddings=True)
    blocks = backbone.vit.blocks
    norms = {f"blocks.{m}.{p}" for m, module in blocks.named_modules()
             if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("Norm")
             for p, _ in module.named_parameters()}
    scales = {f"blocks.{n}" for n, _ in blocks.named_parameters() if n.rpartition(".")[2] in ("gamma", "gamma_1",
                                                                                                "gamma_2")}
    expected = {f"blocks.{n}" for n, _ in blocks.named_parameters()} - norms - scales
    assert norms and trainable(backbone) == expected
    linears = {f"blocks.{m}.{p}" for m, module in blocks.named_modules() if isinstance(module, nn.Linear)
               for p, _ in module.named_parameters()}
    assert linears <= expected  # every attention/MLP Linear trains


def test_trained_weights_get_gradients_and_frozen_ones_none():
    backbone = DINOv2(arch="tiny", img_size=64, out_scales=None, frozen=False,
                      freeze_norms_and_embeddings=True).train()
    sum(f.mean() for f in backbone(torch.randn(1, 3, 64, 64))).backward()
    for name, param in backbone.vit.named_parameters():
        assert (param.grad is not None) == (name in DINOV2_TRAINED), name


def test_option_only_applies_to_full_finetuning():
    for options in (dict(), dict(frozen=True), dict(peft=dict(type="SoMA", r=4, start_block=2))):
        with pytest.raises(ValueError, match="freeze_norms_and_embeddings"):
            DINOv2(arch="tiny", img_size=64, freeze_norms_and_embeddings=True, **options)
