"""soma.peft.hf_export: a trained SoMA backbone as a peft LoRA adapter on a plain timm model with the stock weights."""
from __future__ import annotations

import json

import pytest
import timm
import torch

from soma.models import EVA02, DINOv2
from soma.peft import soma_layers
from soma.peft.hf_export import (ADAPTER_CONFIG_NAME, PEFT_KEY_PREFIX, lora_factors, peft_lora_adapter,
                                 save_peft_lora_adapter, soma_start_state)

peft = pytest.importorskip("peft")

R = 2
TIMM = {
    DINOv2: ("vit_small_patch14_dinov2", dict(embed_dim=64, depth=4, num_heads=2)),
    # EVA-02 tiny/small: fused q/k/v with q/v biases
    EVA02: ("eva02_tiny_patch14_224", dict(embed_dim=64, depth=4, num_heads=2, qkv_fused=True, scale_mlp=True)),
}


def plain_timm_model(cls, state=None) -> torch.nn.Module:
    name, kwargs = TIMM[cls]
    extra = dict(global_pool="") if cls is EVA02 else {}
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=56, patch_size=14,
                              dynamic_img_size=True, **kwargs, **extra)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def stock_weights(tmp_path_factory):
    """Tiny "pretrained" timm weights per family, with every parameter non-trivial (layer scales, biases)."""
    paths = {}
    for cls in TIMM:
        torch.manual_seed(0)
        model = plain_timm_model(cls)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.05 * torch.randn_like(param))
        paths[cls] = tmp_path_factory.mktemp(cls.__name__) / "stock.pth"
        torch.save(model.state_dict(), paths[cls])
    return paths


def train_like(cls, checkpoint, init: str, change_biases: bool):
    """The backbone on the stock weights, its initial SoMA state, then random adapters (a stand-in for training)."""
    kwargs = dict(timm_kwargs=dict(qkv_fused=True)) if cls is EVA02 else {}
    backbone = cls(arch="tiny", img_size=56, patch_size=14, out_scales=None, final_norm=False,
                   peft=dict(type="SoMA", r=R, start_block=1, init=init),
                   init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)), **kwargs)
    backbone.init_weights()
    start = soma_start_state(backbone.vit)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in soma_layers(backbone.vit).values():
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=generator) / 8)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) / 8)
            if change_biases and layer.base_layer.bias is not None:
                layer.base_layer.bias.add_(0.1 * torch.randn(layer.base_layer.bias.shape, generator=generator))
    return backbone.eval(), start


@pytest.mark.parametrize(("init", "change_biases"), [("minor", True), ("principal", False), ("lora", False),
                                                     ("released", True)])
def test_peft_loads_the_adapter_on_the_stock_weights_and_gives_our_features(stock_weights, tmp_path, init,
                                                                             change_biases):
    backbone, start = train_like(DINOv2, stock_weights[DINOv2], init, change_biases)
    tensors, config = peft_lora_adapter(backbone.vit, start, base_model_name_or_path="vit_small_patch14_dinov2")
    save_peft_lora_adapter(tmp_path / "hf", tensors, config)

    loaded = peft.LoraConfig.from_pretrained(str(tmp_path / "hf"))
    assert isinstance(loaded, peft.LoraConfig) and loaded.peft_type == peft.PeftType.LORA
    assert loaded.bias == ("lora_only" if change_biases else "none")
    per_slice = 2 * R if init in ("minor", "principal") else R
    assert loaded.r == per_slice and loaded.lora_alpha == loaded.r  # scaling 1; attn.proj, mlp.fc1, mlp.fc2
    assert loaded.rank_pattern == {n: 3 * per_slice for n in soma_layers(backbone.vit) if n.endswith("qkv")}
    assert loaded.alpha_pattern == loaded.rank_pattern

    stock = torch.load(stock_weights[DINOv2], weights_only=True)
    model = peft.PeftModel.from_pretrained(plain_timm_model(DINOv2, stock), str(tmp_path / "hf")).eval()
    x = torch.randn(2, 3, 70, 56)
    with torch.no_grad():
        ours = backbone.forward_intermediates(x)
        theirs = model.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
        untouched = plain_timm_model(DINOv2, stock).forward_intermediates(x, indices=[3], intermediates_only=True)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(untouched[0], ours[-1], atol=1e-2)  # the adapter does change the features


def test_factors_have_the_stated_rank_and_equal_the_trained_change(stock_weights):
    backbone, start = train_like(DINOv2, stock_weights[DINOv2], "minor", change_biases=False)
    for name, layer in soma_layers(backbone.vit).items():
        lora_b, lora_a = lora_factors(layer, start[name], name)
        merged = layer.base_layer.weight.double() + layer.delta_weight().double()
        torch.testing.assert_close(lora_b @ lora_a, merged - start[name].pretrained_weight, atol=1e-6, rtol=1e-6)
        assert lora_a.shape[0] == layer.splits * 2 * R
        assert torch.linalg.matrix_rank(lora_b @ lora_a) == layer.splits * 2 * R  # random adapters: full 2r


def test_fused_qkv_with_biases_needs_timms_separate_bias_option(stock_weights, tmp_path):
    """EVA-02 tiny/small (and DINOv3 qkvb): timm's attention skips a wrapped qkv unless `qkv_bias_separate`."""
    from soma.apis.export import _separate_bias_note

    backbone, start = train_like(EVA02, stock_weights[EVA02], "minor", change_biases=True)
    assert "qkv_bias_separate = True" in _separate_bias_note(backbone.vit)[0]  # the tool tells the user
    save_peft_lora_adapter(tmp_path / "hf", *peft_lora_adapter(backbone.vit, start))
    stock = torch.load(stock_weights[EVA02], weights_only=True)
    plain = plain_timm_model(EVA02, stock)
    for block in plain.blocks:
        block.attn.qkv_bias_separate = True
    model = peft.PeftModel.from_pretrained(plain, str(tmp_path / "hf")).eval()
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        for a, b in zip(backbone.forward_intermediates(x),
                        model.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_other_base_weights_are_refused(stock_weights, tmp_path):
    backbone, start = train_like(DINOv2, stock_weights[DINOv2], "minor", change_biases=False)
    with torch.no_grad():
        next(iter(soma_layers(backbone.vit).values())).base_layer.weight.add_(0.05)
    with pytest.raises(ValueError, match="other base weights"):
        peft_lora_adapter(backbone.vit, start)


def test_written_files_have_peft_keys(stock_weights, tmp_path):
    from safetensors.torch import load_file

    backbone, start = train_like(DINOv2, stock_weights[DINOv2], "lora", change_biases=False)
    save_peft_lora_adapter(tmp_path / "hf", *peft_lora_adapter(backbone.vit, start))
    keys = set(load_file(tmp_path / "hf" / "adapter_model.safetensors"))
    expected = {f"{PEFT_KEY_PREFIX}{name}.lora_{ab}.weight" for name in soma_layers(backbone.vit) for ab in "AB"}
    assert keys == expected
    assert json.loads((tmp_path / "hf" / ADAPTER_CONFIG_NAME).read_text())["target_modules"] == sorted(
        soma_layers(backbone.vit))
