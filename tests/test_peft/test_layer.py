"""SoMALinear: exactness of the SVD split, merging, training only the adapters."""
import pytest
import torch
import torch.nn as nn

from soma.peft import SoMALinear

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def make_linear(out_features=24, in_features=16, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("init", ["minor", "principal", "lora"])
def test_output_unchanged_at_init(init, dtype):
    base = make_linear(dtype=dtype)
    x = torch.randn(7, 16, dtype=dtype)
    expected = base(x).detach()
    layer = SoMALinear(base, r=4, init=init)
    assert torch.allclose(layer(x), expected, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("init", ["minor", "principal"])
@pytest.mark.parametrize("shape", [(24, 16), (16, 24)])
def test_adapter_holds_the_selected_singular_components(init, shape):
    base = make_linear(*shape, dtype=torch.float64)
    weight = base.weight.detach().clone()
    s_all = torch.linalg.svdvals(weight)
    layer = SoMALinear(base, r=3, init=init, alpha=6.0)
    delta = layer.delta_weight().detach()
    expected_s = s_all[-3:] if init == "minor" else s_all[:3]
    assert torch.allclose(torch.linalg.svdvals(delta)[:3], expected_s, atol=1e-10)
    # residual + scale·BA reproduces W, and the residual holds exactly the other singular values.
    assert torch.allclose(layer.residual_weight() + delta, weight, atol=1e-12)
    residual_s = torch.linalg.svdvals(layer.residual_weight())
    kept = s_all[:-3] if init == "minor" else s_all[3:]
    assert torch.allclose(residual_s[: len(kept)], kept, atol=1e-10)


def test_merge_unmerge_round_trip_and_idempotence():
    layer = SoMALinear(make_linear(), r=4)
    with torch.no_grad():
        layer.lora_B.add_(0.1)  # a trained adapter
    x = torch.randn(3, 16)
    unmerged = layer(x).detach()
    layer.merge()
    layer.merge()
    assert torch.allclose(layer(x), unmerged, atol=1e-5)
    layer.unmerge()
    layer.unmerge()
    assert torch.allclose(layer(x), unmerged, atol=1e-5)


@pytest.mark.parametrize("train_bias", [True, False])
def test_one_step_changes_only_adapters_and_chosen_bias(train_bias):
    layer = SoMALinear(make_linear(), r=4, train_bias=train_bias)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in layer.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    layer(torch.randn(8, 16)).pow(2).sum().backward()
    optimizer.step()
    changed = {n for n, p in layer.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"lora_A", "lora_B"} | ({"base_layer.bias"} if train_bias else set())


def test_fused_qkv_equals_three_separate_layers():
    torch.manual_seed(0)
    fused = nn.Linear(16, 3 * 12).double()
    parts = [nn.Linear(16, 12).double() for _ in range(3)]
    with torch.no_grad():
        for i, part in enumerate(parts):
            part.weight.copy_(fused.weight[i * 12:(i + 1) * 12])
            part.bias.copy_(fused.bias[i * 12:(i + 1) * 12])
    fused_layer = SoMALinear(fused, r=3, splits=3)
    part_layers = [SoMALinear(p, r=3) for p in parts]
    for i, part in enumerate(part_layers):
        assert torch.allclose(fused_layer.lora_A[i * 3:(i + 1) * 3], part.lora_A, atol=1e-10)
        assert torch.allclose(fused_layer.lora_B[i * 12:(i + 1) * 12], part.lora_B, atol=1e-10)
    with torch.no_grad():  # train-like perturbation keeps the equivalence
        fused_layer.lora_B.add_(0.05)
        for part in part_layers:
            part.lora_B.add_(0.05)
    x = torch.randn(4, 16, dtype=torch.float64)
    assert torch.allclose(fused_layer(x), torch.cat([p(x) for p in part_layers], -1), atol=1e-10)
    assert fused_layer.lora_A.shape == (9, 16) and fused_layer.lora_B.shape == (36, 3)


def test_bf16_layer_keeps_dtype_and_output():
    base = make_linear(64, 48)
    x = torch.randn(5, 48)
    reference = base(x).detach()
    layer = SoMALinear(base.to(torch.bfloat16), r=4)
    out = layer(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and layer.lora_A.dtype == torch.bfloat16
    assert torch.allclose(out.float(), reference, atol=5e-2)


@pytest.mark.parametrize("r", [0, -1, 16, 20])
def test_rank_out_of_range(r):
    with pytest.raises(ValueError, match="`r` must satisfy"):
        SoMALinear(make_linear(24, 16), r=r)


def test_errors_for_wrong_module_and_double_adaptation():
    with pytest.raises(TypeError, match="nn.Linear"):
        SoMALinear(nn.Conv2d(3, 3, 1), r=1)
    layer = SoMALinear(make_linear(), r=2)
    with pytest.raises(ValueError, match="already adapted"):
        SoMALinear(layer, r=2)
