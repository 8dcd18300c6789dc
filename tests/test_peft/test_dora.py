"""DoRA: same function as HF peft's LoraConfig(use_dora=True), unchanged output at init, exact merge, state dicts."""
import copy

import pytest
import torch
import torch.nn as nn

from soma.peft import (DoRAConfig, DoRALinear, adapter_layers, adapter_state_dict, apply_dora,
                       load_adapter_state_dict, merge_adapters, trainable_parameters, unload_adapters,
                       unmerge_adapters)


def make_linear(out_features=24, in_features=16, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def perturb(layer: DoRALinear, seed: int = 1) -> None:
    """A trained-looking adapter: nonzero B, magnitudes away from the row norms."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_B.copy_(0.1 * torch.randn(layer.lora_B.shape, generator=generator))
        layer.lora_magnitude.mul_(1 + 0.2 * torch.rand(layer.lora_magnitude.shape, generator=generator))


def test_same_output_as_hf_peft_dora():
    peft = pytest.importorskip("peft")
    base = make_linear()
    ours = DoRALinear(copy.deepcopy(base), r=4, alpha=8)
    theirs = peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["lin"]),
                                          nn.ModuleDict({"lin": copy.deepcopy(base)}))["lin"]
    # The initial magnitudes agree (the row norms of W), before any copying.
    assert torch.allclose(ours.lora_magnitude, theirs.lora_magnitude_vector["default"].weight, atol=1e-6)
    perturb(ours)
    with torch.no_grad():
        theirs.lora_A["default"].weight.copy_(ours.lora_A)
        theirs.lora_B["default"].weight.copy_(ours.lora_B)
        theirs.lora_magnitude_vector["default"].weight.copy_(ours.lora_magnitude)
    x = torch.randn(5, 7, 16)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_output_unchanged_at_init_and_merge_is_exact():
    base = make_linear()
    x = torch.randn(6, 16)
    expected = base(x).detach()
    layer = DoRALinear(base, r=4)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    perturb(layer)
    frozen = layer.frozen_weight().clone()
    trained = layer(x).detach()
    assert not torch.allclose(trained, expected, atol=1e-3)
    layer.merge()
    layer.merge()
    assert layer.merged and torch.allclose(layer(x), trained, atol=1e-5)
    assert torch.allclose(layer.frozen_weight(), frozen, atol=1e-6)  # the same base weight, merged or not
    assert torch.allclose(layer.base_layer.weight, frozen + layer.delta_weight(), atol=1e-5)
    layer.unmerge()
    layer.unmerge()
    assert not layer.merged and torch.allclose(layer.base_layer.weight, frozen, atol=1e-6)
    assert torch.allclose(layer(x), trained, atol=1e-5)


def test_fused_qkv_has_one_low_rank_part_per_slice():
    layer = DoRALinear(make_linear(36, 16), r=2, splits=3)
    assert layer.lora_A.shape == (6, 16) and layer.lora_B.shape == (36, 2) and layer.lora_magnitude.shape == (36,)
    assert layer.adapted_matrices == 3


def test_gradient_reaches_magnitude_and_adapters_only():
    layer = DoRALinear(make_linear(), r=4)
    perturb(layer)
    layer(torch.randn(8, 16)).pow(2).sum().backward()
    grads = {n for n, p in layer.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {"lora_A", "lora_B", "lora_magnitude", "base_layer.bias"}


def test_apply_state_dict_round_trip_and_unload():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 6))
    pretrained = copy.deepcopy(model.state_dict())
    config = DoRAConfig(r=2, target_modules=("0", "2"))
    apply_dora(model, config)
    assert sorted(adapter_layers(model)) == ["0", "2"]
    summary = trainable_parameters(model)
    assert summary.adapter == 2 * (8 + 12) + 12 + 2 * (12 + 6) + 6 and summary.bias == 12 + 6
    for layer in adapter_layers(model).values():
        perturb(layer)
    x = torch.randn(4, 8)
    trained = model(x).detach()
    state = adapter_state_dict(model)
    assert state["method"] == "DoRA" and state["config"]["r"] == 2 and "0.lora_magnitude" in state["adapters"]

    fresh = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 6))
    fresh.load_state_dict(pretrained)
    apply_dora(fresh, config)
    merge_adapters(fresh)
    load_adapter_state_dict(fresh, state)
    assert torch.allclose(fresh(x), trained, atol=1e-5)
    unmerge_adapters(fresh)
    assert torch.allclose(fresh(x), trained, atol=1e-5)

    other = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 6))  # other base weights
    apply_dora(other, config)
    with pytest.raises(ValueError, match="different base weights"):
        load_adapter_state_dict(other, state)

    unload_adapters(model)
    assert not adapter_layers(model) and isinstance(model[0], nn.Linear)
    assert torch.allclose(model(x), trained, atol=1e-5)


def test_config_is_a_low_rank_config():
    with pytest.raises(ValueError, match="unknown DoRA option"):
        DoRAConfig.from_dict({"init": "minor"})
    assert DoRAConfig(start_block=2).is_target("blocks.3.attn.qkv")
    assert not DoRAConfig(start_block=2).is_target("blocks.1.attn.qkv")
