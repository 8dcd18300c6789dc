"""A bfloat16 frozen base (``frozen_dtype="bfloat16"``) on the 7B's block at a tiny width.

The SVD split reads the float32 weights; afterwards every frozen weight but the norms' is bfloat16, adapters and
trained biases float32. Measured at init on this arch (64 dims, 4 blocks, random weights, batch 2 at 64x48,
2-core CPU): the output differs from the float32 model by 5.4e-3 of its largest value, of the order of bfloat16
compute's own rounding (float32 weights under bfloat16 autocast, the AMP recipe, differ from float32 by 2.9e-3,
and from the bfloat16 base by 4.0e-3).
"""
from __future__ import annotations

import pytest
import torch

from soma.models.backbones import DINOv3
from soma.peft import soma_layers
from soma.peft.frozen_dtype import cast_frozen_weights
from soma.utils.errors import ConfigError

from ..test_models.test_large_backbones import make_pretrained


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    path = tmp_path_factory.mktemp("bf16") / "tiny7b.pth"
    make_pretrained(path)
    return path


def build(path, **kwargs) -> DINOv3:
    backbone = DINOv3(arch="tiny_swiglu", img_size=64, out_scales=None,
                      init_cfg=dict(type="Pretrained", checkpoint=str(path)), **kwargs)
    backbone.init_weights()
    return backbone.eval()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def test_dtypes_and_svd_from_float32(pretrained):
    peft = dict(type="SoMA", r=4, start_block=2)
    full = build(pretrained, peft=peft)
    half = build(pretrained, peft=peft, frozen_dtype="bfloat16")
    for name, param in half.vit.named_parameters():
        module = half.vit.get_submodule(name.rpartition(".")[0]) if "." in name else half.vit
        if param.requires_grad or "norm" in type(module).__name__.lower():
            assert param.dtype == torch.float32, name
        else:
            assert param.dtype == torch.bfloat16, name
    # The split was taken before the cast: identical adapters, and W_res is the float32 residual rounded once.
    for name, layer in soma_layers(half.vit).items():
        reference = soma_layers(full.vit)[name]
        assert torch.equal(layer.lora_A, reference.lora_A) and torch.equal(layer.lora_B, reference.lora_B)
        assert torch.equal(layer.base_layer.weight, reference.base_layer.weight.bfloat16())
        bias = layer.base_layer.bias  # the 7B's qkv has none
        assert bias is None or (bias.dtype == torch.float32 and bias.requires_grad)


def test_init_output_difference_and_savings(pretrained, capsys):
    peft = dict(type="SoMA", r=4, start_block=2)
    full = build(pretrained, peft=peft)
    half = build(pretrained, peft=peft, frozen_dtype="bfloat16")
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = half.forward_intermediates(x)
        float32 = full.forward_intermediates(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = full.forward_intermediates(x)
    assert all(f.dtype == torch.float32 for f in ours)  # no outer autocast: float32 maps for a float32 head
    vs_float32 = max(relative(a, b) for a, b in zip(ours, float32))
    vs_amp = max(relative(a, b) for a, b in zip(ours, amp))
    amp_vs_float32 = max(relative(a, b) for a, b in zip(amp, float32))
    frozen = sum(p.numel() for p in full.vit.parameters() if not p.requires_grad)
    bytes_full = sum(p.numel() * p.element_size() for p in full.vit.parameters())
    bytes_half = sum(p.numel() * p.element_size() for p in half.vit.parameters())
    with capsys.disabled():
        print(f"\nbf16 base at init: max |diff| / max |out| vs float32 {vs_float32:.2e}, vs float32 weights under "
              f"bf16 autocast {vs_amp:.2e} (autocast vs float32 {amp_vs_float32:.2e}); weights {bytes_full} -> "
              f"{bytes_half} bytes ({frozen} frozen parameters)")
    assert 0 < vs_float32 < 2e-2 and vs_amp < 2e-2
    assert vs_float32 < 3 * amp_vs_float32  # the rounding is that of bf16 compute, not more
    norms = sum(p.numel() for n, p in full.vit.named_parameters() if "norm" in n)
    assert bytes_full - bytes_half == 2 * (frozen - norms)


def test_trains_adapters_in_float32(pretrained):
    half = build(pretrained, peft=dict(type="SoMA", r=4, start_block=2), frozen_dtype="bfloat16").train()
    frozen = {n: p.detach().clone() for n, p in half.vit.named_parameters() if not p.requires_grad}
    trained = [p for p in half.vit.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-2)
    sum(f.mean() for f in half(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trained)
    before = [p.detach().clone() for p in trained]
    optimizer.step()
    assert any(not torch.equal(p, b) for p, b in zip(trained, before))
    assert all(torch.equal(p, frozen[n]) for n, p in half.vit.named_parameters() if not p.requires_grad)


def test_cast_skips_norms_and_trainable():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].requires_grad_(False)
    model[1].requires_grad_(False)
    assert cast_frozen_weights(model, torch.bfloat16) == 2 * (4 * 2 + 2)
    assert [p.dtype for p in model.parameters()] == [torch.float32] * 4 + [torch.bfloat16] * 2


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(frozen_dtype="float16", peft=dict(type="SoMA", r=4)), "`frozen_dtype` must be None, 'float32' or one of"),
    (dict(frozen_dtype="bfloat16", frozen=False), "`frozen=False` trains every weight"),
], ids=["float16", "full-fine-tuning"])
def test_user_errors(kwargs, phrase):
    with pytest.raises(ConfigError, match=phrase) as info:
        DINOv3(arch="tiny", **kwargs)
    assert "\n" not in str(info.value)
