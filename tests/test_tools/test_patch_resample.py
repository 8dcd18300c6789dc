"""--patch-resample bicubic|pinv: the 14→16 patch kernel as the official converter makes it, or as timm does.

The gains are measured as what they mean for the network: the response of the patch embedding to a constant
image (DC gain) and to smooth images enlarged by 16/14, so that a 16-pixel patch shows what a 14-pixel one did.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_patch_embed

from soma.convert.models import dinov2 as convert_dinov2
from soma.convert.models.patch_kernel import dc_gain, resample_patch_kernel
from soma.models import DINOv2

from .test_convert_models import (
    CASES,
    INPUT_SIZE,
    pretrained,
    reference_model,
    save_source,
)


def smooth_kernel(out_channels: int = 256, size: int = 14, seed: int = 0) -> torch.Tensor:
    """A kernel like a ViT's patch embedding: smooth low-frequency filters with a non-zero mean, not white noise."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(size, dtype=torch.float64)
    kernel = torch.zeros(out_channels, 3, size, size, dtype=torch.float64)
    for fy in range(3):
        for fx in range(3):
            amplitude = torch.randn(out_channels, 3, 1, 1, generator=g, dtype=torch.float64) / (1 + fx * fx + fy * fy)
            phase = 2 * math.pi * torch.rand(out_channels, 3, 1, 1, generator=g, dtype=torch.float64)
            wave = 2 * math.pi * (fx * grid[None, :] + fy * grid[:, None]) / size
            kernel += amplitude * torch.cos(wave + phase)
    return (kernel / size).float()


def constant_image_response(kernel: torch.Tensor) -> torch.Tensor:
    """(out, in): the patch embedding's response to a unit constant image in each input channel alone."""
    size = kernel.shape[-1]
    images = torch.eye(3)[:, :, None, None].expand(3, 3, size, size)
    return F.conv2d(images, kernel.double().float(), stride=size).flatten(1).T


def slope(before: torch.Tensor, after: torch.Tensor) -> float:
    before, after = before.double().flatten(), after.double().flatten()
    return float(before @ after / (before @ before))


def smooth_images(count: int = 8, patches: int = 4, native: int = 14, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 3, patches + 1, patches + 1, generator=g)
    return F.interpolate(coarse, size=(patches * native,) * 2, mode="bicubic", align_corners=False)


@pytest.mark.parametrize("method, expected", [("bicubic", (16 / 14) ** 2), ("pinv", 1.0)])
def test_dc_gain_and_token_scale(method, expected):
    native = smooth_kernel()
    resized = resample_patch_kernel(native, 16, method)
    assert resized.shape == (256, 3, 16, 16)

    gain = slope(constant_image_response(native), constant_image_response(resized))
    assert gain == pytest.approx(expected, abs=0.02)  # bicubic: 1.306 (the published runs); pinv: 1.000
    assert dc_gain(native, resized) == pytest.approx(gain, rel=1e-5)  # what the converter prints

    # The same scene at the two patch sizes: 14-pixel patches, and the image enlarged 16/14 with 16-pixel patches.
    images = smooth_images()
    enlarged = F.interpolate(images, scale_factor=16 / 14, mode="bicubic", align_corners=False)
    tokens_native = F.conv2d(images, native, stride=14)
    tokens_resized = F.conv2d(enlarged, resized, stride=16)
    assert tokens_native.shape == tokens_resized.shape
    token_gain = float(tokens_resized.norm() / tokens_native.norm())
    assert token_gain == pytest.approx(expected, abs=0.04)


def test_bicubic_is_the_official_plain_interpolation():
    native = smooth_kernel(8)
    expected = F.interpolate(native, size=(16, 16), mode="bicubic", align_corners=False)
    assert torch.equal(resample_patch_kernel(native, 16, "bicubic"), expected)
    assert torch.equal(resample_patch_kernel(native, 16, "pinv"), resample_patch_embed(native, [16, 16]))


@pytest.mark.parametrize("case", [CASES[0], CASES[4]], ids=lambda c: c.id)
@pytest.mark.parametrize("method", ["bicubic", "pinv"])
def test_converter_writes_the_kernel_the_backbone_loads_as_is(case, method, tmp_path, capsys):
    src, dst = save_source(case, tmp_path / "source"), tmp_path / "converted.pth"
    assert case.converter.main([str(src), str(dst), "--patch-resample", method]) == 0
    assert "DC gain" in capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    native = reference_model(case).state_dict()["patch_embed.proj.weight"]
    grid = case.native_img_size // 14
    assert {k: saved["meta"][k] for k in ("patch_size", "patch_resample", "native_patch_size", "img_size")} == \
        dict(patch_size=16, patch_resample=method, native_patch_size=14, img_size=grid * 16)
    assert torch.equal(saved["state_dict"]["patch_embed.proj.weight"], resample_patch_kernel(native, 16, method))

    backbone = case.backbone(arch="tiny", img_size=64, patch_size=16, peft=None, init_cfg=pretrained(dst),
                             **case.backbone_kwargs())
    backbone.init_weights()
    assert torch.equal(backbone.vit.patch_embed.proj.weight, saved["state_dict"]["patch_embed.proj.weight"])
    if method == "pinv":  # the same backbone as from the native file, resampled when it loads
        native_file = tmp_path / "native.pth"
        assert case.converter.main([str(src), str(native_file)]) == 0
        default = case.backbone(arch="tiny", img_size=64, patch_size=16, peft=None, init_cfg=pretrained(native_file),
                                **case.backbone_kwargs())
        default.init_weights()
        torch.testing.assert_close(default.vit.patch_embed.proj.weight, backbone.vit.patch_embed.proj.weight)


def test_a_resampled_file_is_refused_at_another_patch_size(tmp_path):
    src, dst = save_source(CASES[0], tmp_path / "source"), tmp_path / "converted.pth"
    assert convert_dinov2.main([str(src), str(dst), "--patch-resample", "bicubic"]) == 0
    backbone = DINOv2(arch="tiny", img_size=INPUT_SIZE, patch_size=14, peft=None, init_cfg=pretrained(dst))
    with pytest.raises(ValueError, match="resampled to 16x16 .*--patch-size 14"):
        backbone.init_weights()


def test_patch_size_needs_a_method(tmp_path, capsys):
    src = save_source(CASES[0], tmp_path / "source")
    assert convert_dinov2.main([str(src), str(tmp_path / "out.pth"), "--patch-size", "8"]) == 1
    assert "--patch-size needs --patch-resample" in capsys.readouterr().err
