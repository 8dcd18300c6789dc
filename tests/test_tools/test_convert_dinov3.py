"""tools/convert_models/dinov3.py: official/timm DINOv3 layouts → SoMA format, loaded with timm's features.

The "official" files are made from tiny random timm models by inverting timm's ``eva.checkpoint_filter_fn`` for
DINOv3 (``storage_tokens``, ``ls{1,2}.gamma``, a fused ``qkv.bias`` with its k-masking ``bias_mask``), so no
download is needed.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch

from soma.convert.models import dinov3 as convert_dinov3
from soma.models.backbones import DINOv3

from ..conftest import REPO
from .weight_layouts import StateDict, random_timm_model, save_state, timm_layout

TINY = dict(embed_dim=64, depth=4, num_heads=2)  # DINOv3's "tiny" arch
NATIVE_IMG_SIZE = 256
ALL_BLOCKS = (0, 1, 2, 3)


# ---------------------------------------------------------------------------------------------------- layouts
def dinov3_official(state: StateDict) -> StateDict:
    """The facebookresearch/dinov3 release layout of a timm DINOv3 state dict (inverse of timm's filter).

    Every block gets a fused ``qkv.bias`` (zero q/v parts for a bias-free timm model, as in the distilled
    releases) with a random k part that the release's ``bias_mask`` switches off.
    """
    official = {}
    dim = state["cls_token"].shape[-1]
    for key, value in state.items():
        key = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        if key.endswith(("attn.q_bias", "attn.v_bias")):
            continue
        official[key] = value
        if key.endswith("attn.qkv.weight"):
            prefix = key[: -len("weight")]
            q_bias = state.get(prefix.replace("qkv.", "q_bias"), torch.zeros(dim))
            v_bias = state.get(prefix.replace("qkv.", "v_bias"), torch.zeros(dim))
            official[prefix + "bias"] = torch.cat([q_bias, torch.randn(dim), v_bias])
            official[prefix + "bias_mask"] = torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)])
    head_dim = dim // TINY["num_heads"]
    official.update({"mask_token": torch.randn(1, dim), "rope_embed.periods": torch.rand(head_dim // 4)})
    return official


# ---------------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One source file: a tiny random timm DINOv3 saved in one layout, and what the converter should find."""

    id: str
    timm_name: str
    to_layout: Callable[[StateDict], StateDict]
    suffix: str
    layout: str

    @property
    def qkv_bias(self) -> bool:
        return self.timm_name.endswith("_qkvb")


CASES = [
    Case("official", "vit_small_patch16_dinov3", dinov3_official, ".pth", "official"),
    Case("official-qkv-bias", "vit_small_patch16_dinov3_qkvb", dinov3_official, ".pth", "official"),
    Case("timm-safetensors", "vit_small_patch16_dinov3", timm_layout, ".safetensors", "timm"),
    Case("timm-qkv-bias", "vit_small_patch16_dinov3_qkvb", timm_layout, ".pth", "timm"),
]

def reference_model(timm_name: str) -> torch.nn.Module:
    """The tiny timm model with random weights everywhere (layer scales and q/v biases too)."""
    return random_timm_model(timm_name, NATIVE_IMG_SIZE, **TINY)


def save_source(case: Case, path: Path) -> Path:
    torch.manual_seed(1)  # the official layout's random k bias and mask token
    return save_state(case.to_layout(reference_model(case.timm_name).state_dict()), path, case.suffix)


def timm_features(timm_name: str, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return reference_model(timm_name).forward_intermediates(x, indices=list(ALL_BLOCKS), intermediates_only=True)


def backbone_features(checkpoint: Path, qkv_bias: bool, x: torch.Tensor) -> list[torch.Tensor]:
    backbone = DINOv3(arch="tiny", img_size=64, out_indices=ALL_BLOCKS, out_scales=None, frozen=True,
                      qkv_bias=qkv_bias, init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)))
    backbone.init_weights()
    with torch.no_grad():
        return backbone.eval().forward_intermediates(x)


# ---------------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_converted_file_loads_with_timm_features(case, tmp_path, capsys):
    src, dst = save_source(case, tmp_path / "source"), tmp_path / "converted.pth"
    assert convert_dinov3.main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    if case.layout == "official":  # reported as dropped: the pretraining-only and fixed tensors
        assert "mask_token" in out and "rope_embed.periods" in out
        if not case.qkv_bias:  # and the all-zero biases the bias-free model has no place for
            assert "blocks.0.attn.qkv.bias" in out

    saved = torch.load(dst, weights_only=True)
    assert saved["meta"] == dict(family="DINOv3", timm_model=case.timm_name, arch="tiny", source=src.name,
                                 register_tokens=4, layout=case.layout, patch_size=16, img_size=NATIVE_IMG_SIZE)
    expected = reference_model(case.timm_name).state_dict()
    assert sorted(saved["state_dict"]) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(saved["state_dict"][key], value, atol=0, rtol=0, msg=key)

    x = torch.randn(2, 3, 64, 48)
    for ours, theirs in zip(backbone_features(dst, case.qkv_bias, x), timm_features(case.timm_name, x)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_backbone_loads_the_official_file_directly(tmp_path):
    """init_cfg may name the release file itself: the backbone runs the same filter at load time."""
    src = save_source(CASES[1], tmp_path / "dinov3_vitt16_pretrain")
    x = torch.randn(1, 3, 48, 64)
    for ours, theirs in zip(backbone_features(src, True, x), timm_features(CASES[1].timm_name, x)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- errors
def official(timm_name: str = "vit_small_patch16_dinov3", drop: str | None = None) -> Callable[[], StateDict]:
    def make() -> StateDict:
        state = dinov3_official(reference_model(timm_name).state_dict())
        if drop:
            del state[drop]
        return state
    return make


def dinov2_official() -> StateDict:
    model = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0, img_size=56, **TINY)
    state = model.state_dict()
    state["register_tokens"] = state.pop("reg_token")
    return dict(state, mask_token=torch.zeros(1, 64))


def with_storage_tokens(count: int) -> Callable[[], StateDict]:
    def make() -> StateDict:
        return dict(official()(), storage_tokens=torch.zeros(1, count, 64))
    return make


ERROR_CASES = [
    # (id, source state, extra arguments, phrases the error must contain)
    ("dinov2-reg4", dinov2_official, [], ["not a DINOv3 checkpoint", "'storage_tokens'"]),
    ("absolute-pos-embed", lambda: dict(reference_model(CASES[2].timm_name).state_dict(),
                                        pos_embed=torch.zeros(1, 17, 64)), [], ["absolute position embedding"]),
    ("arch-contradicts", official(), ["--arch", "large"], ["`--arch large` contradicts the weights", "DINOv3-tiny"]),
    ("qkv-bias-contradicts", official(), ["--qkv-bias", "1"],
     ["`--qkv-bias 1` contradicts the weights", "qkv_bias=0"]),
    ("storage-tokens", with_storage_tokens(2), [], ["2 storage/register tokens", "DINOv3 releases have 4"]),
    ("missing-block-weight", official(drop="blocks.1.mlp.fc2.weight"), [],
     ["lacks 1 weights", "blocks.1.mlp.fc2.weight", "official DINOv3 layout", "dinov3_vit{s,b,l}16"]),
]


@pytest.mark.parametrize("make_state, args, phrases", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_converter_refuses(make_state, args, phrases, tmp_path, capsys):
    src, dst = tmp_path / "bad.pth", tmp_path / "never.pth"
    torch.save(make_state(), src)
    assert convert_dinov3.main([str(src), str(dst), *args]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    for phrase in phrases:
        assert phrase in error
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]  # no output, no temporary file left behind


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_command_line(tmp_path):
    src, dst = save_source(CASES[0], tmp_path / "dinov3_vitt16_pretrain"), tmp_path / "out.pth"
    result = subprocess.run([sys.executable, "tools/convert_models/dinov3.py", str(src), str(dst), "--arch", "tiny",
                             "--register-tokens", "4", "--qkv-bias", "0"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "official DINOv3 layout, arch tiny (vit_small_patch16_dinov3" in result.stdout
    assert "renamed 9 keys" in result.stdout  # storage_tokens and the 4 blocks' ls1/ls2.gamma
    # A converted file is itself a valid source (timm layout under "state_dict"): converting again changes nothing.
    assert convert_dinov3.main([str(dst), str(tmp_path / "again.pth")]) == 0
    again, converted = (torch.load(p, weights_only=True) for p in (tmp_path / "again.pth", dst))
    assert again["meta"]["layout"] == "timm" and again["state_dict"].keys() == converted["state_dict"].keys()
    assert all(torch.equal(v, converted["state_dict"][k]) for k, v in again["state_dict"].items())
