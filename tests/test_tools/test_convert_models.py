"""tools/convert_models: official/timm layouts → SoMA format, loaded by our backbones with timm's features.

The "official" files are made from tiny random timm models by inverting timm's own conversions
(``vision_transformer._convert_dinov2`` and ``eva.checkpoint_filter_fn``), so no download is needed.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
from timm.layers import resample_patch_embed

from soma.convert.models import dinov2 as convert_dinov2
from soma.convert.models import eva02 as convert_eva02
from soma.models import EVA02, DINOv2, FoundationViT

from ..conftest import REPO
from .weight_layouts import StateDict, random_timm_model, save_state, timm_layout

TINY = dict(embed_dim=64, depth=4, num_heads=2)  # the backbones' "tiny" arch
EVA02_TINY = dict(TINY, qkv_fused=False, scale_mlp=True)
INPUT_SIZE = 56  # a 4x4 grid at patch 14: the backbones resample the 518/224 px position embedding to it
ALL_BLOCKS = (0, 1, 2, 3)


# ---------------------------------------------------------------------------------------------------- layouts
def dinov2_official(state: StateDict) -> StateDict:
    """The facebookresearch release layout of a timm DINOv2 state dict (the inverse of timm's _convert_dinov2)."""
    state = dict(state)
    dim = state["cls_token"].shape[-1]
    state["mask_token"] = torch.randn(1, dim)
    if "reg_token" in state:
        # The release keeps the class position in `pos_embed`; timm folds it into the class token.
        cls_position = torch.randn(1, 1, dim)
        state["register_tokens"] = state.pop("reg_token")
        state["pos_embed"] = torch.cat([cls_position, state["pos_embed"]], dim=1)
        state["cls_token"] = state["cls_token"] - cls_position
    return state


EVA02_OFFICIAL_NAMES = {"attn.q_proj.bias": "attn.q_bias", "attn.v_proj.bias": "attn.v_bias",
                        "mlp.fc1_g.": "mlp.w1.", "mlp.fc1_x.": "mlp.w2.", "mlp.norm.": "mlp.ffn_ln.",
                        "mlp.fc2.": "mlp.w3."}


def eva02_official(state: StateDict) -> dict[str, StateDict]:
    """The EVA-02 MIM release layout of a timm EVA-02 state dict (the inverse of timm's eva checkpoint filter)."""
    official = {}
    for key, value in state.items():
        for timm_name, name in EVA02_OFFICIAL_NAMES.items():
            key = key.replace(timm_name, name)
        official["norm." + key[len("fc_norm."):] if key.startswith("fc_norm.") else key] = value
    dim = state["cls_token"].shape[-1]
    official.update({"mask_token": torch.randn(1, 1, dim), "lm_head.weight": torch.randn(32, dim),
                     "lm_head.bias": torch.randn(32), "rope.freqs_cos": torch.randn(16, 16),
                     "rope.freqs_sin": torch.randn(16, 16)})
    return {"module": official}  # the MIM checkpoints nest the weights


# ---------------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One source file: a tiny random timm model saved in one layout, and what the converter should find."""

    id: str
    converter: ModuleType
    backbone: type[FoundationViT]
    timm_name: str
    timm_kwargs: dict
    native_img_size: int
    to_layout: Callable[[StateDict], dict]
    suffix: str
    layout: str
    register_tokens: int = 0

    def backbone_kwargs(self) -> dict:
        return {"register_tokens": self.register_tokens} if self.backbone is DINOv2 else {}


CASES = [
    Case("dinov2-official", convert_dinov2, DINOv2, "vit_small_patch14_dinov2", TINY, 518, dinov2_official, ".pth",
         "official"),
    Case("dinov2-reg4-official", convert_dinov2, DINOv2, "vit_small_patch14_reg4_dinov2", TINY, 518, dinov2_official,
         ".pth", "official", register_tokens=4),
    Case("dinov2-timm-safetensors", convert_dinov2, DINOv2, "vit_small_patch14_dinov2", TINY, 518, timm_layout,
         ".safetensors", "timm"),
    Case("dinov2-reg4-timm", convert_dinov2, DINOv2, "vit_small_patch14_reg4_dinov2", TINY, 518, timm_layout, ".pth",
         "timm", register_tokens=4),
    Case("eva02-official", convert_eva02, EVA02, "eva02_tiny_patch14_224", EVA02_TINY, 224, eva02_official, ".pth",
         "official"),
    Case("eva02-timm-safetensors", convert_eva02, EVA02, "eva02_tiny_patch14_224", EVA02_TINY, 224, timm_layout,
         ".safetensors", "timm"),
]

def reference_model(case: Case) -> torch.nn.Module:
    """The tiny timm model at its native size, with random weights everywhere (layer scale and biases too)."""
    return random_timm_model(case.timm_name, case.native_img_size, **case.timm_kwargs)


def save_source(case: Case, path: Path) -> Path:
    return save_state(case.to_layout(reference_model(case).state_dict()), path, case.suffix)


def pretrained(path: Path) -> dict:
    return dict(type="Pretrained", checkpoint=str(path))


# ---------------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_converted_file_loads_with_timm_features(case, tmp_path, capsys):
    reference = reference_model(case)
    src, dst = save_source(case, tmp_path / "source"), tmp_path / "converted.pth"
    assert case.converter.main([str(src), str(dst)]) == 0
    if case.layout == "official":
        assert "mask_token" in capsys.readouterr().out  # reported as dropped

    saved = torch.load(dst, weights_only=True)
    assert saved["meta"] == dict(family=case.backbone.__name__, timm_model=case.timm_name, arch="tiny",
                                 source=src.name, register_tokens=case.register_tokens, layout=case.layout,
                                 patch_size=14, img_size=case.native_img_size)
    # timm's layout at the native patch size and grid: every weight of the timm model, nothing resampled.
    expected = reference.state_dict()
    assert sorted(saved["state_dict"]) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(saved["state_dict"][key], value, atol=1e-6, rtol=0, msg=key)

    backbone = case.backbone(arch="tiny", img_size=INPUT_SIZE, patch_size=14, out_indices=ALL_BLOCKS,
                             out_scales=None, peft=None, init_cfg=pretrained(dst), **case.backbone_kwargs())
    backbone.init_weights()
    x = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        ours = backbone.eval().forward_intermediates(x)
        theirs = reference.forward_intermediates(x, indices=list(ALL_BLOCKS), intermediates_only=True)
    assert len(ours) == len(theirs) == len(ALL_BLOCKS)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[4]], ids=lambda c: c.id)
def test_patch16_backbone_resamples_the_converted_file(case, tmp_path):
    src, dst = save_source(case, tmp_path / "source"), tmp_path / "converted.pth"
    assert case.converter.main([str(src), str(dst)]) == 0
    backbone = case.backbone(arch="tiny", img_size=64, patch_size=16, peft=None, init_cfg=pretrained(dst),
                             **case.backbone_kwargs())
    backbone.init_weights()
    kernel = torch.load(dst, weights_only=True)["state_dict"]["patch_embed.proj.weight"]
    torch.testing.assert_close(backbone.vit.patch_embed.proj.weight, resample_patch_embed(kernel, [16, 16]))
    with torch.no_grad():
        features = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 64, 16, 16), (1, 64, 8, 8), (1, 64, 4, 4), (1, 64, 2, 2)]
    assert all(torch.isfinite(f).all() for f in features)


# ---------------------------------------------------------------------------------------------------- errors
def resnet18_state() -> StateDict:
    from torchvision.models import resnet18

    return resnet18(weights=None).state_dict()


def without(key: str) -> Callable[[], StateDict]:
    def make() -> StateDict:
        state = dinov2_official(reference_model(CASES[0]).state_dict())
        del state[key]
        return state
    return make


ERROR_CASES = [
    # (id, converter, source state, extra arguments, phrases the error must contain)
    ("resnet-to-dinov2", convert_dinov2, resnet18_state, [],
     ["not a DINOv2 checkpoint", "'blocks.0.attn.qkv.weight'"]),
    ("resnet-to-eva02", convert_eva02, resnet18_state, [],
     ["not an EVA02 checkpoint", "'blocks.0.attn.q_proj.weight'"]),
    ("eva02-to-dinov2", convert_dinov2, lambda: eva02_official(reference_model(CASES[4]).state_dict()), [],
     ["not a DINOv2 checkpoint"]),
    ("dinov2-to-eva02", convert_eva02, lambda: dinov2_official(reference_model(CASES[0]).state_dict()), [],
     ["not an EVA02 checkpoint"]),
    ("arch-contradicts", convert_dinov2, without("mask_token"), ["--arch", "large"],
     ["`--arch large` contradicts the weights", "DINOv2-tiny"]),
    ("eva02-arch-contradicts", convert_eva02, lambda: eva02_official(reference_model(CASES[4]).state_dict()),
     ["--arch", "base"], ["`--arch base` contradicts the weights", "EVA02-tiny"]),
    ("register-tokens-contradict", convert_dinov2, without("mask_token"), ["--register-tokens", "4"],
     ["`--register-tokens 4` contradicts the weights", "register_tokens=0"]),
    ("missing-block-weight", convert_dinov2, without("blocks.1.mlp.fc2.weight"), [],
     ["lacks 1 weights", "blocks.1.mlp.fc2.weight", "official DINOv2 layout", "dinov2_vit{s,b,l,g}14"]),
    ("no-tensors", convert_dinov2, lambda: {"epoch": 3}, [], ["no state dict of tensors"]),
]


@pytest.mark.parametrize("converter, make_state, args, phrases", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_converter_refuses(converter, make_state, args, phrases, tmp_path, capsys):
    src, dst = tmp_path / "bad.pth", tmp_path / "never.pth"
    torch.save(make_state(), src)
    assert converter.main([str(src), str(dst), *args]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    for phrase in phrases:
        assert phrase in error
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]  # no output, no temporary file left behind


def test_converter_refuses_a_missing_file(tmp_path, capsys):
    assert convert_eva02.main([str(tmp_path / "absent.pt"), str(tmp_path / "out.pth")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- command line
def run_script(script: str, *args: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"tools/convert_models/{script}", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_command_lines(tmp_path):
    src, dst = save_source(CASES[0], tmp_path / "dinov2_vitt14_pretrain"), tmp_path / "out.pth"
    result = run_script("dinov2.py", src, dst, "--arch", "tiny", "--register-tokens", "0")  # options that agree
    assert result.returncode == 0, result.stderr
    assert "dropped 1 keys" in result.stdout and "mask_token" in result.stdout
    converted = torch.load(dst, weights_only=True)
    assert converted["meta"]["timm_model"] == "vit_small_patch14_dinov2"
    # A converted file is itself a valid source (timm layout under "state_dict"): converting again changes nothing.
    assert convert_dinov2.main([str(dst), str(tmp_path / "again.pth")]) == 0
    again = torch.load(tmp_path / "again.pth", weights_only=True)
    assert again["meta"]["layout"] == "timm" and again["state_dict"].keys() == converted["state_dict"].keys()
    assert all(torch.equal(v, converted["state_dict"][k]) for k, v in again["state_dict"].items())

    torch.save(resnet18_state(), tmp_path / "resnet18.pth")
    result = run_script("eva02.py", tmp_path / "resnet18.pth", tmp_path / "never.pth")
    assert result.returncode == 1 and "not an EVA02 checkpoint" in result.stderr
    assert not (tmp_path / "never.pth").exists()
