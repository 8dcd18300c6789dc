"""transformers checkpoints (``save_pretrained`` folders, ``model.safetensors``) → SoMA format, checked block by block.

Tiny random ``Dinov2Model``, ``Dinov2WithRegistersModel`` and ``DINOv3ViTModel`` are saved with ``save_pretrained``,
converted with the converters' command-line functions and loaded into our backbones; each block's patch tokens must
equal transformers' ``hidden_states[i + 1]`` at the native size. transformers is a test-only dependency.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from soma.convert.models import dinov2 as convert_dinov2
from soma.convert.models import dinov3 as convert_dinov3
from soma.models.backbones.checkpoint_filters import dinov2_to_timm
from soma.models import DINOv2
from soma.models.backbones import DINOv3

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2)  # the backbones' "tiny" arch
ALL_BLOCKS = (0, 1, 2, 3)


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every weight moved off its initial value (layer scales, norms and biases too)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def dinov2_hf(registers: int = 0, **config) -> torch.nn.Module:
    if registers:
        settings = transformers.Dinov2WithRegistersConfig(**TINY, image_size=56, patch_size=14,
                                                          num_register_tokens=registers, **config)
        return randomised(transformers.Dinov2WithRegistersModel(settings))
    return randomised(transformers.Dinov2Model(transformers.Dinov2Config(**TINY, image_size=56, patch_size=14,
                                                                         **config)))


def dinov3_hf(**config) -> torch.nn.Module:
    settings = dict(TINY, intermediate_size=256, num_register_tokens=4, image_size=64, patch_size=16)
    return randomised(transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(**{**settings, **config})))


def hf_patch_tokens(model: torch.nn.Module, x: torch.Tensor, prefix: int, patch: int) -> list[torch.Tensor]:
    """transformers' block outputs (``hidden_states[i + 1]``) as (B, C, H/p, W/p) maps of the patch tokens."""
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states
    grid_h, grid_w = x.shape[-2] // patch, x.shape[-1] // patch
    return [hidden[i + 1][:, prefix:].reshape(x.shape[0], grid_h, grid_w, -1).permute(0, 3, 1, 2)
            for i in ALL_BLOCKS]


def backbone_features(backbone: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    backbone.init_weights()
    with torch.no_grad():
        return backbone.eval().forward_intermediates(x)


def assert_same_blocks(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs) == len(ALL_BLOCKS)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m, i=index: f"block {i}: {m}")


def pretrained(path: Path) -> dict:
    return dict(type="Pretrained", checkpoint=str(path))


# ---------------------------------------------------------------------------------------------------- DINOv2
@pytest.mark.parametrize("registers, source", [(0, "folder"), (4, "safetensors")], ids=["Dinov2Model-folder",
                                                                                         "WithRegisters-file"])
def test_dinov2_blocks_match_transformers(registers, source, tmp_path, capsys):
    model = dinov2_hf(registers)
    model.save_pretrained(tmp_path / "hf")
    src = tmp_path / "hf" if source == "folder" else tmp_path / "hf" / "model.safetensors"
    dst = tmp_path / "converted.pth"
    assert convert_dinov2.main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    name = "Dinov2WithRegistersModel" if registers else "Dinov2Model"
    assert f"transformers DINOv2 layout ({name})" in out and "mask_token" in out  # dropped, as for the release
    meta = torch.load(dst, weights_only=True)["meta"]
    assert (meta["layout"], meta["transformers_model"], meta["arch"], meta["register_tokens"], meta["img_size"]) == \
        ("transformers", name, "tiny", registers, 56)

    backbone = DINOv2(arch="tiny", img_size=56, patch_size=14, out_indices=ALL_BLOCKS, out_scales=None,
                      register_tokens=registers, init_cfg=pretrained(dst))
    x = torch.randn(2, 3, 56, 56)
    assert_same_blocks(backbone_features(backbone, x), hf_patch_tokens(model, x, 1 + registers, 14))


def test_backbone_loads_the_transformers_file_directly(tmp_path):
    """init_cfg may name the transformers weights: the backbone runs the converter's conversion at load time."""
    model = dinov2_hf(4)
    model.save_pretrained(tmp_path / "hf")
    backbone = DINOv2(arch="tiny", img_size=56, patch_size=14, out_indices=ALL_BLOCKS, out_scales=None,
                      register_tokens=4, init_cfg=pretrained(tmp_path / "hf" / "model.safetensors"))
    x = torch.randn(1, 3, 56, 56)
    assert_same_blocks(backbone_features(backbone, x), hf_patch_tokens(model, x, 5, 14))


@pytest.mark.parametrize("names", ["saved", "in-memory"])
def test_dinov2_swiglu_mlp_matches_transformers(names):
    """The giant's SwiGLU MLP (``weights_in``/``weights_out`` as saved, ``gate/up/down_proj`` in memory)."""
    model = dinov2_hf(use_swiglu_ffn=True)
    if names == "saved":
        import tempfile

        from safetensors.torch import load_file
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            state = load_file(f"{folder}/model.safetensors")
        assert "encoder.layer.0.mlp.weights_in.weight" in state
    else:
        state = model.state_dict()
        assert "encoder.layer.0.mlp.gate_proj.weight" in state
    # timm's DINOv2 giant block (packed SwiGLU) at the tiny width: fc1 out 2 x 176, as transformers rounds it.
    vit = timm.create_model("vit_giant_patch14_dinov2", pretrained=False, num_classes=0, img_size=56, embed_dim=64,
                            depth=4, num_heads=2, mlp_ratio=2 * 176 / 64).eval()
    vit.load_state_dict(dinov2_to_timm(state, vit), strict=True)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        ours = vit.forward_intermediates(x, indices=list(ALL_BLOCKS), intermediates_only=True)
    assert_same_blocks(ours, hf_patch_tokens(model, x, 1, 14))


# ---------------------------------------------------------------------------------------------------- DINOv3
@pytest.mark.parametrize("biases", [True, False], ids=["qv-bias", "no-bias"])
def test_dinov3_blocks_match_transformers(biases, tmp_path, capsys):
    model = dinov3_hf(query_bias=biases, value_bias=biases)
    model.save_pretrained(tmp_path / "hf")
    dst = tmp_path / "converted.pth"
    assert convert_dinov3.main([str(tmp_path / "hf"), str(dst)]) == 0
    assert "transformers DINOv3 layout (DINOv3ViTModel)" in capsys.readouterr().out
    meta = torch.load(dst, weights_only=True)["meta"]
    expected_timm = "vit_small_patch16_dinov3_qkvb" if biases else "vit_small_patch16_dinov3"
    assert (meta["layout"], meta["timm_model"], meta["arch"]) == ("transformers", expected_timm, "tiny")

    backbone = DINOv3(arch="tiny", img_size=64, out_indices=ALL_BLOCKS, out_scales=None, qkv_bias=biases,
                      init_cfg=pretrained(dst))
    x = torch.randn(2, 3, 64, 48)  # RoPE: any grid is native, a non-square one checks the axes
    assert_same_blocks(backbone_features(backbone, x), hf_patch_tokens(model, x, 5, 16))


# ---------------------------------------------------------------------------------------------------- refusals
def test_a_transformers_model_of_another_family_is_refused(tmp_path, capsys):
    dinov2_hf().save_pretrained(tmp_path / "hf")
    assert convert_dinov3.main([str(tmp_path / "hf"), str(tmp_path / "out.pth")]) == 1
    assert "layout of the transformers Dinov2Model, which is not a DINOv3 model" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_a_config_the_timm_model_cannot_compute_is_refused(tmp_path, capsys):
    dinov2_hf().save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps(dict(config, hidden_act="relu")))
    assert convert_dinov2.main([str(tmp_path / "hf"), str(tmp_path / "out.pth")]) == 1
    assert "{'hidden_act': 'relu'}" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert convert_dinov2.main([str(tmp_path / "empty"), str(tmp_path / "out.pth")]) == 1
    assert "without model.safetensors" in capsys.readouterr().err
