"""Converters: release/timm layouts → SoMA format, loaded by our backbones with features equal to timm's."""
import subprocess
import sys

import pytest
import timm
import torch

from soma.models import DINOv2, EVA02
from tools.convert_models import dinov2 as convert_dinov2
from tools.convert_models import eva02 as convert_eva02

from ..conftest import REPO

DINOV2_TINY = dict(embed_dim=64, depth=4, num_heads=2)
EVA02_TINY = dict(embed_dim=64, depth=4, num_heads=2, qkv_fused=False, scale_mlp=True)


def randomized(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return model.eval()


@pytest.fixture(scope="module")
def tiny_dinov2():
    torch.manual_seed(0)
    return randomized(timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                                        img_size=56, **DINOV2_TINY))


def official_dinov2_layout(model):
    """The key layout of the facebookresearch release: timm's keys plus the iBOT mask token."""
    state = dict(model.state_dict())
    state["mask_token"] = torch.zeros(1, model.embed_dim)
    return state


def assert_same_features(backbone, reference, size):
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours = backbone.eval().forward_intermediates(x)
        theirs = reference.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_dinov2_official_layout_round_trip(tmp_path, tiny_dinov2):
    src, dst = tmp_path / "dinov2_vitt14_pretrain.pth", tmp_path / "converted.pth"
    torch.save(official_dinov2_layout(tiny_dinov2), src)
    assert convert_dinov2.main([str(src), str(dst)]) == 0
    meta = torch.load(dst, weights_only=True)["meta"]
    assert (meta["arch"], meta["img_size"], meta["register_tokens"]) == ("tiny", 56, 0)
    backbone = DINOv2(arch="tiny", img_size=56, patch_size=14, out_indices=(0, 1, 2, 3), out_scales=None,
                      frozen=True, init_cfg=dict(type="Pretrained", checkpoint=str(dst)))
    backbone.init_weights()
    assert_same_features(backbone, tiny_dinov2, 56)
    # The published setting: patch 16 from the 14x14 kernels (timm's resampling), any crop size.
    resampled = DINOv2(arch="tiny", img_size=64, patch_size=16, frozen=True,
                       init_cfg=dict(type="Pretrained", checkpoint=str(dst)))
    resampled.init_weights()
    assert [tuple(f.shape) for f in resampled(torch.randn(1, 3, 64, 64))][2] == (1, 64, 4, 4)


def test_dinov2_cli_and_errors(tmp_path, tiny_dinov2):
    src, dst = tmp_path / "release.pth", tmp_path / "out.pth"
    torch.save(official_dinov2_layout(tiny_dinov2), src)
    cli = subprocess.run([sys.executable, str(REPO / "tools/convert_models/dinov2.py"), str(src), str(dst)],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "mask_token" in cli.stderr and dst.is_file()  # the dropped key is reported

    def error_of(state, *args):
        path = tmp_path / "bad.pth"
        torch.save(state, path)
        result = subprocess.run([sys.executable, str(REPO / "tools/convert_models/dinov2.py"), str(path),
                                 str(tmp_path / "never.pth"), *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and not (tmp_path / "never.pth").exists()
        return result.stderr

    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}
    assert "not a DINOv2 checkpoint" in error_of(resnet)
    assert "contradicts the weights" in error_of(official_dinov2_layout(tiny_dinov2), "--arch", "large")
    incomplete = official_dinov2_layout(tiny_dinov2)
    del incomplete["blocks.1.mlp.fc2.weight"]
    assert "blocks.1.mlp.fc2.weight" in error_of(incomplete)


def test_eva02_round_trip(tmp_path):
    torch.manual_seed(0)
    reference = randomized(timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=0,
                                             img_size=56, **EVA02_TINY))
    src, dst = tmp_path / "eva02_tiny.pth", tmp_path / "converted.pth"
    torch.save({"module": reference.state_dict()}, src)  # release files nest the weights
    assert convert_eva02.main([str(src), str(dst)]) == 0
    backbone = EVA02(arch="tiny", img_size=56, patch_size=14, out_indices=(0, 1, 2, 3), out_scales=None,
                     frozen=True, init_cfg=dict(type="Pretrained", checkpoint=str(dst)))
    backbone.init_weights()
    assert_same_features(backbone, reference, 56)


def test_register_token_release_needs_the_matching_backbone(tmp_path):
    torch.manual_seed(0)
    reg = randomized(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0,
                                       img_size=56, **DINOV2_TINY))
    dst = tmp_path / "reg4.pth"
    torch.save(reg.state_dict(), tmp_path / "src.pth")
    assert convert_dinov2.main([str(tmp_path / "src.pth"), str(dst)]) == 0
    assert torch.load(dst, weights_only=True)["meta"]["register_tokens"] == 4
    options = dict(arch="tiny", img_size=56, patch_size=14, out_indices=(0, 1, 2, 3), out_scales=None, frozen=True,
                   init_cfg=dict(type="Pretrained", checkpoint=str(dst)))
    with pytest.raises((KeyError, ValueError), match="register_tokens"):
        DINOv2(**options).init_weights()  # never silently drop the register tokens
    backbone = DINOv2(register_tokens=4, **options)
    backbone.init_weights()
    assert_same_features(backbone, reg, 56)
