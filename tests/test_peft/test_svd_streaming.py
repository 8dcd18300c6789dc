"""SoMA's split one matrix at a time: the extra memory of a fused layer's initialisation is one slice's worth."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from soma.analysis.memory_plan import LiveTensorMemory
from soma.peft import SoMAConfig, SoMALinear, svd_components


def test_fused_layer_split_holds_one_float64_slice():
    torch.manual_seed(0)
    dim, r = 256, 8
    base = nn.Linear(dim, 3 * dim)
    reference = base.weight.detach().double().clone()
    layer = SoMALinear(base, r=r, splits=3, svd_method="gram", initialize=False)
    tracker = LiveTensorMemory()
    with tracker, torch.no_grad():
        layer.initialize()
    slice_bytes = dim * dim * 8
    # A float64 copy of the whole (3·dim × dim) weight would be 3 slices; the per-slice split holds one (plus the
    # r-column factors). (SciPy's Gram matrix lives in NumPy, outside this count; torch's would add one more.)
    assert slice_bytes <= tracker.peak < 1.5 * slice_bytes, tracker.peak / slice_bytes
    # and it is still the exact split: W_res + scale·BA = W per slice
    rebuilt = layer.base_layer.weight.double() + layer.delta_weight().double()
    torch.testing.assert_close(rebuilt, reference, rtol=0, atol=1e-6)


def test_explicit_cpu_device_is_the_default_path():
    weight = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    for a, b in zip(svd_components(weight, 4, "minor", "gram", device="cpu"), svd_components(weight, 4, "minor")):
        assert torch.equal(a, b)


def test_svd_device_errors():
    with pytest.raises(ValueError, match="`svd_device` must be None, 'cpu' or 'cuda"):
        SoMAConfig(svd_device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible; leave it unset"):
            svd_components(torch.randn(8, 8), 2, "minor", device="cuda")
