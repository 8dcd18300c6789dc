"""The largest archs: DINOv3 S+/H+/7B and DINOv2-g (reg4 too) at full size on the meta device, and their SwiGLU
block at a tiny width for the numerics.

Parameter counts are checked three ways: the backbone (built on the meta device, nothing allocated), timm's model
of the same name, and a count by formula from the official facebookresearch/dinov3 (hub/backbones.py) and DINOv2
model settings (width, depth, ``ffn_ratio``, the SwiGLU hidden width rule ``int(ratio·d·2/3)`` aligned up).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch

from soma.models.backbones import DINOv2, DINOv3
from soma.peft import soma_layers, trainable_parameters
from soma.utils.errors import ConfigError


@dataclass(frozen=True)
class Official:
    """One release's settings as its authors' code states them (timm-free)."""

    cls: type
    arch: str
    timm_name: str
    dim: int
    depth: int
    ffn_ratio: float
    swiglu_align: int  # 0: GELU MLP
    patch: int
    prefix_tokens: int  # class + register/storage tokens
    abs_pos_tokens: int = 0  # DINOv2: 37x37 grid + class position
    published: float = 0.0  # parameter count in the paper / model card, in millions (rounded there)
    register_tokens: int | None = None

    def hidden(self) -> int:
        hidden = int(self.dim * self.ffn_ratio)
        if not self.swiglu_align:
            return hidden
        hidden = int(hidden * 2 / 3)
        return hidden + (-hidden % self.swiglu_align)

    def count(self) -> int:
        """Parameters of the backbone (timm layout: no q/k/v bias for DINOv3, q/k/v biases for DINOv2)."""
        d, h = self.dim, self.hidden()
        qkv_bias = 3 * d if self.cls is DINOv2 else 0
        attn = 3 * d * d + qkv_bias + d * d + d
        mlp = (2 * (d * h + h) if self.swiglu_align else d * h + h) + h * d + d
        block = 2 * d + attn + d + 2 * d + mlp + d  # norm1, attn, ls1, norm2, mlp, ls2
        stem = 3 * self.patch**2 * d + d + self.prefix_tokens * d + self.abs_pos_tokens * d
        return stem + self.depth * block + 2 * d  # final norm


RELEASES = [
    Official(DINOv3, "small_plus", "vit_small_plus_patch16_dinov3", 384, 12, 6, 8, 16, 5, published=29),
    Official(DINOv3, "huge_plus", "vit_huge_plus_patch16_dinov3", 1280, 32, 6, 8, 16, 5, published=840),
    Official(DINOv3, "7b", "vit_7b_patch16_dinov3", 4096, 40, 3, 64, 16, 5, published=6716),
    # DINOv2-g/14: ffn_ratio 4 with the fused SwiGLU whose width is rounded up to a multiple of 8.
    Official(DINOv2, "giant", "vit_giant_patch14_dinov2", 1536, 40, 4, 8, 14, 1, 37 * 37 + 1, published=1100),
    # The reg4 release's class position is folded into the class token by timm's filter (no_embed_class): 37x37.
    Official(DINOv2, "giant", "vit_giant_patch14_reg4_dinov2", 1536, 40, 4, 8, 14, 5, 37 * 37, published=1100,
             register_tokens=4),
]


def build_meta(release: Official, **kwargs) -> torch.nn.Module:
    options = {} if release.register_tokens is None else dict(register_tokens=release.register_tokens)
    with torch.device("meta"):
        return release.cls(arch=release.arch, img_size=518 if release.cls is DINOv2 else 512, **options, **kwargs)


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.timm_name)
def test_full_size_parameter_count(release):
    # The whole model: the last block as output and the final norm kept (the backbone prunes what it does not use).
    backbone = build_meta(release, patch_size=release.patch, frozen=True, final_norm=True,
                          out_indices=(release.depth - 1,), out_scales=None)
    ours = sum(p.numel() for p in backbone.parameters())
    with torch.device("meta"):
        reference = timm.create_model(release.timm_name, pretrained=False, num_classes=0)
    assert backbone.timm_create_args[0] == release.timm_name
    assert ours == sum(p.numel() for p in reference.parameters()) == release.count()
    assert abs(ours / 1e6 - release.published) / release.published < 0.04, ours
    assert all(p.device.type == "meta" for p in backbone.parameters())


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.timm_name)
def test_defaults_out_indices_targets_start_block(release):
    """Out indices: 4 evenly spaced blocks ending with the last; SoMA adapts every Linear of the later blocks."""
    backbone = build_meta(release, peft=dict(type="SoMA", r=16))
    quarter = release.depth // 4
    assert backbone.out_indices == tuple(quarter * k - 1 for k in (1, 2, 3, 4))
    start = backbone.peft_config.start_block
    assert start == round(release.depth / 3)  # one third of the depth, as 8 of 24 for ViT-L
    layers = soma_layers(backbone.vit)
    mlp = ("mlp.fc1", "mlp.fc2") if release.cls is DINOv2 else ("mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")
    assert sorted(layers) == sorted(f"blocks.{b}.{m}" for b in range(start, release.depth)
                                    for m in ("attn.qkv", "attn.proj", *mlp))
    # q, k, v and (DINOv2-g's packed SwiGLU) gate and value are decomposed as separate matrices.
    assert layers[f"blocks.{start}.attn.qkv"].splits == 3
    if release.cls is DINOv2:
        assert layers[f"blocks.{start}.mlp.fc1"].splits == 2
    d, h, r = release.dim, release.hidden(), 16
    # Adapters r·(in + out) per matrix: q, k, v, proj (d×d); MLP gate, value (h×d) and output (d×h).
    per_block = r * (4 * 2 * d + 3 * (d + h))
    bias = d + 2 * h + d + (3 * d if release.cls is DINOv2 else 0)  # proj, gate and value, fc2 (+ DINOv2's qkv)
    summary = trainable_parameters(backbone)
    blocks = release.depth - start
    assert (summary.adapter, summary.bias, summary.other_trainable) == (blocks * per_block, blocks * bias, 0)


def test_7b_trainable_count_stated():
    """DINOv3-7B, r=16 from block 13 (27 blocks): 30,081,024 adapter + 663,552 bias parameters."""
    summary = trainable_parameters(build_meta(RELEASES[2], peft=dict(type="SoMA", r=16)))
    assert (summary.adapter, summary.bias) == (30_081_024, 663_552)


# ---------------------------------------------------------------------------------------------------- numerics
def make_pretrained(path: Path) -> torch.nn.Module:
    """The 7B's block at 64 dims, 4 blocks, random weights everywhere, saved at ``path``."""
    torch.manual_seed(0)
    model = timm.create_model("vit_7b_patch16_dinov3", pretrained=False, num_classes=0, img_size=64,
                              embed_dim=64, depth=4, num_heads=2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    torch.save(model.state_dict(), path)
    return model.eval()


def build_tiny(path: Path, **kwargs) -> DINOv3:
    backbone = DINOv3(arch="tiny_swiglu", img_size=64, out_scales=None,
                      init_cfg=dict(type="Pretrained", checkpoint=str(path)), **kwargs)
    backbone.init_weights()
    return backbone.eval()


def test_swiglu_block_soma_output_equals_frozen_and_timm(tmp_path):
    reference = make_pretrained(tmp_path / "tiny7b.pth")
    frozen = build_tiny(tmp_path / "tiny7b.pth", frozen=True)
    adapted = build_tiny(tmp_path / "tiny7b.pth", peft=dict(type="SoMA", r=4, start_block=2))
    assert frozen.vit.blocks[0].mlp.fc1_g.out_features == 128  # mlp_ratio 2 → 128, aligned to 64
    assert sorted(soma_layers(adapted.vit)) == [f"blocks.{b}.{m}" for b in (2, 3) for m in
                                                ("attn.proj", "attn.qkv", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")]
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        theirs = reference.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
        for a, b, c in zip(adapted.forward_intermediates(x), frozen.forward_intermediates(x), theirs):
            torch.testing.assert_close(b, c, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        for layer in soma_layers(adapted.vit).values():
            layer.lora_B.add_(0.1)
        assert not torch.allclose(adapted.forward_intermediates(x)[-1], frozen.forward_intermediates(x)[-1])


# ---------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("build, phrases", [
    (lambda: DINOv3(arch="7b", qkv_bias=True), ["`qkv_bias=True`", "'7b'", "leave `qkv_bias` unset"]),
    (lambda: DINOv3(arch="vit7b"), ["`arch` must be one of", "'7b'", "'huge_plus'"]),
    (lambda: DINOv2(arch="huge_plus"), ["`arch` must be one of", "'giant'"]),
], ids=["7b-qkv-bias", "unknown-dinov3-arch", "dinov3-arch-for-dinov2"])
def test_user_errors_are_one_line(build, phrases):
    with torch.device("meta"), pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message
