"""DINOv3's SwiGLU releases (S+, H+, 7B): the official and transformers layouts → SoMA format, at a tiny width.

The official files are made from a tiny random timm ``vit_7b_patch16_dinov3`` (the 7B's block: SwiGLU aligned to
64, no q/k/v bias, at 64 dims and 4 blocks = the ``tiny_swiglu`` arch) by inverting timm's filter into the
facebookresearch/dinov3 names (``mlp.w1`` gate, ``w2`` value, ``w3`` output, ``storage_tokens``, ``ls{1,2}.gamma``,
the 7B's ``local_cls_norm``; the H+ variant adds the zero, k-masked ``qkv.bias``). Besides timm's features, the MLP
is checked against the SwiGLU of the authors' model code computed here from the official tensors
(``w3(silu(w1 x) · w2 x)``), so that gate and value cannot be swapped silently. transformers' gated
``DINOv3ViTModel`` is the third, independent implementation.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from soma.convert.models import dinov3 as convert_dinov3
from soma.convert.models.family import infer_arch
from soma.models.backbones import DINOv3

from .weight_layouts import StateDict, random_timm_model

TINY = dict(embed_dim=64, depth=4, num_heads=2)
ALL_BLOCKS = (0, 1, 2, 3)


def reference() -> torch.nn.Module:
    return random_timm_model("vit_7b_patch16_dinov3", 256, **TINY)


def official_swiglu(state: StateDict, qkv_bias: bool) -> StateDict:
    """The facebookresearch/dinov3 layout of a timm SwiGLU DINOv3 state dict (7B; ``qkv_bias``: H+/S+)."""
    renames = {"reg_token": "storage_tokens", "gamma_1": "ls1.gamma", "gamma_2": "ls2.gamma",
               "mlp.fc1_g.": "mlp.w1.", "mlp.fc1_x.": "mlp.w2.", "mlp.fc2.": "mlp.w3."}
    out = {}
    dim = state["cls_token"].shape[-1]
    for key, value in state.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key] = value
        if qkv_bias and key.endswith("attn.qkv.weight"):
            out[key.replace("weight", "bias")] = torch.cat([torch.zeros(dim), torch.randn(dim), torch.zeros(dim)])
            out[key.replace("weight", "bias_mask")] = torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)])
    generator = torch.Generator().manual_seed(0)
    out.update({"mask_token": torch.randn(1, dim, generator=generator),
                "local_cls_norm.weight": torch.randn(dim, generator=generator),
                "local_cls_norm.bias": torch.randn(dim, generator=generator),
                "rope_embed.periods": torch.rand(dim // TINY["num_heads"] // 4, generator=generator)})
    return out


def load(path) -> DINOv3:
    backbone = DINOv3(arch="tiny_swiglu", img_size=64, out_indices=ALL_BLOCKS, out_scales=None, frozen=True,
                      init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    backbone.init_weights()
    return backbone.eval()


@pytest.mark.parametrize("qkv_bias", [False, True], ids=["7b-layout", "hplus-layout"])
def test_official_swiglu_file_converts_to_timm_features(qkv_bias, tmp_path, capsys):
    official = official_swiglu(reference().state_dict(), qkv_bias)
    torch.save(official, tmp_path / "dinov3_vit7b16_pretrain.pth")
    dst = tmp_path / "converted.pth"
    assert convert_dinov3.main([str(tmp_path / "dinov3_vit7b16_pretrain.pth"), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "official DINOv3 layout, arch tiny_swiglu (vit_7b_patch16_dinov3" in out
    assert "local_cls_norm.weight" in out and "mask_token" in out  # reported as dropped
    saved = torch.load(dst, weights_only=True)
    assert sorted(saved["state_dict"]) == sorted(reference().state_dict())

    backbone = load(dst)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        ours = backbone.forward_intermediates(x)
        theirs = reference().forward_intermediates(x, indices=list(ALL_BLOCKS), intermediates_only=True)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # The authors' SwiGLU from the official tensors: w3(silu(w1 x) * w2 x).
        tokens = torch.randn(2, 7, 64)
        block = "blocks.2.mlp."
        w = {name: official[block + name] for name in ("w1.weight", "w1.bias", "w2.weight", "w2.bias",
                                                        "w3.weight", "w3.bias")}
        hidden = F.silu(F.linear(tokens, w["w1.weight"], w["w1.bias"])) * F.linear(tokens, w["w2.weight"],
                                                                                      w["w2.bias"])
        expected = F.linear(hidden, w["w3.weight"], w["w3.bias"])
        torch.testing.assert_close(backbone.vit.blocks[2].mlp(tokens), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("timm_name, arch", [
    ("vit_small_patch16_dinov3", "small"), ("vit_small_plus_patch16_dinov3", "small_plus"),
    ("vit_huge_plus_patch16_dinov3", "huge_plus"), ("vit_7b_patch16_dinov3", "7b"),
])
def test_full_size_arch_is_read_off_the_weights(timm_name, arch):
    """S and S+ share width and depth; the MLP (GELU or SwiGLU) tells them apart. Shapes only (meta device)."""
    import timm

    with torch.device("meta"):
        state = timm.create_model(timm_name, pretrained=False, num_classes=0).state_dict()
    assert infer_arch(convert_dinov3.DINOV3, state) == arch
    official = {k.replace("mlp.fc1_g.", "mlp.w1.").replace("reg_token", "storage_tokens"): v for k, v in state.items()}
    assert infer_arch(convert_dinov3.DINOV3, official) == arch


def test_arch_that_contradicts_the_mlp_is_refused():
    import timm

    with torch.device("meta"):
        state = timm.create_model("vit_small_plus_patch16_dinov3", pretrained=False, num_classes=0).state_dict()
    with pytest.raises(ValueError, match="`--arch small` contradicts the weights.*DINOv3-small_plus"):
        infer_arch(convert_dinov3.DINOV3, state, "small")


# ---------------------------------------------------------------------------------------------------- transformers
transformers = pytest.importorskip("transformers")


def test_gated_transformers_model_matches_its_hidden_states(tmp_path, capsys):
    settings = transformers.DINOv3ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                                            intermediate_size=128, num_register_tokens=4, image_size=64,
                                            patch_size=16, use_gated_mlp=True, hidden_act="silu",
                                            query_bias=False, key_bias=False, value_bias=False)
    torch.manual_seed(0)
    model = transformers.DINOv3ViTModel(settings)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.eval().save_pretrained(tmp_path / "hf")
    dst = tmp_path / "converted.pth"
    assert convert_dinov3.main([str(tmp_path / "hf"), str(dst)]) == 0
    assert "arch tiny_swiglu" in capsys.readouterr().out
    backbone = load(dst)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states
        ours = backbone.forward_intermediates(x)
    for index, a in enumerate(ours):
        b = hidden[index + 1][:, 5:].reshape(2, 4, 3, -1).permute(0, 3, 1, 2)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_gated_config_with_gelu_is_refused(tmp_path, capsys):
    settings = transformers.DINOv3ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                                            intermediate_size=128, num_register_tokens=4, image_size=64,
                                            patch_size=16, use_gated_mlp=True, hidden_act="gelu",
                                            query_bias=False, key_bias=False, value_bias=False)
    transformers.DINOv3ViTModel(settings).save_pretrained(tmp_path / "hf")
    assert convert_dinov3.main([str(tmp_path / "hf"), str(tmp_path / "out.pth")]) == 1
    assert "{'hidden_act': 'gelu'}" in capsys.readouterr().err
