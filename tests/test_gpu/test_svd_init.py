"""SoMA's SVD initialisation on the device vs ``torch.linalg.svd`` in float64 on the CPU.

Tolerance: singular values rtol 1e-10 (both are float64 decompositions of the same matrix); the adapted layer
computes the frozen weight exactly (``W_res + scale·BA == W`` to 1e-12 in float64).
"""
import pytest
import torch
import torch.nn as nn

from soma.peft import SoMALinear, svd_components

from .conftest import DEVICES

SHAPES = {"cuda": (3072, 1024), "cpu": (384, 128)}  # ViT-L's qkv on the GPU; smaller where it costs CPU time


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["svd", "gram", "auto"])
@pytest.mark.parametrize("which", ["minor", "principal"])
def test_singular_values_match_cpu_float64(device, method, which):
    rows, cols = SHAPES[device]
    weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0)) / cols**0.5
    reference = torch.linalg.svd(weight.double(), full_matrices=False)
    r = 16
    u, s, vh = svd_components(weight.to(device), r, which, method)
    expected = reference.S[-r:] if which == "minor" else reference.S[:r]
    torch.testing.assert_close(s.cpu(), expected, rtol=1e-10, atol=0)
    # the triplets, not just the values: U diag(S) Vh is the same rank-r part of W
    part = (reference.U[:, -r:] * reference.S[-r:]) @ reference.Vh[-r:] if which == "minor" else \
        (reference.U[:, :r] * reference.S[:r]) @ reference.Vh[:r]
    torch.testing.assert_close(((u * s) @ vh).cpu(), part, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_adapted_layer_keeps_the_function_in_float64(device):
    rows, cols = SHAPES[device]
    torch.manual_seed(0)
    base = nn.Linear(cols, rows).double().to(device)
    original = base.weight.detach().clone()
    layer = SoMALinear(base, r=16, init="minor")  # decomposes on the layer's device
    x = torch.randn(4, cols, dtype=torch.float64, device=device)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, original, base.bias), rtol=0, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_cpu_weights_streamed_through_the_gpu(method):
    """``svd_device="cuda"`` for a CPU layer: the result of a CPU float64 split, with only one slice on the GPU.

    A 7B-shaped fused qkv (3 slices of 4096×4096): the GPU holds at most one float64 slice and its workspace.
    """
    torch.manual_seed(0)
    dim = 4096
    base = nn.Linear(dim, 3 * dim, bias=False)
    base.weight.data.mul_(dim**-0.5)
    reference = SoMALinear(nn.Linear(dim, 3 * dim, bias=False), r=16, initialize=False)
    reference.base_layer.weight.data.copy_(base.weight)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    layer = SoMALinear(base, r=16, init="minor", splits=3, svd_method=method, svd_device="cuda")
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    slice_bytes = dim * dim * 8
    assert layer.lora_A.device.type == "cpu" and layer.base_layer.weight.device.type == "cpu"
    assert peak < 4 * slice_bytes, peak / slice_bytes  # the slice, U/Vh or the Gram matrix, workspace
    for index in range(3):
        s = torch.linalg.svdvals(reference.base_layer.weight[index * dim:(index + 1) * dim].double())[-16:]
        got = layer.lora_B[index * dim:(index + 1) * dim].double().norm(dim=0) ** 2  # = S (B = U√S)
        torch.testing.assert_close(got.sort(descending=True).values, s, rtol=1e-6, atol=0)
