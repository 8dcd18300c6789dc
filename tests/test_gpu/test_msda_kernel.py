"""mmcv's MultiScaleDeformableAttention CUDA kernel vs its pure-PyTorch path (the SOMA_MSDA_PYTORCH fallback).

Tolerances: float64 forward 1e-10 and gradients 1e-8 absolute (the two differ only in summation order);
the full module in float32 1e-5 absolute on outputs of unit scale.
"""
import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention,
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)

from soma.utils.mmcv_ops import (
    mmcv_has_cuda_ops,
    msda_example_inputs,
    msda_kernel_error,
    msda_uses_pytorch,
    use_pytorch_msdeformattn,
)

from .conftest import GPU

pytestmark = GPU


@pytest.fixture(autouse=True)
def needs_the_kernel():
    if not mmcv_has_cuda_ops() or msda_uses_pytorch():
        pytest.skip("mmcv has no CUDA ops here (or SOMA_MSDA_PYTORCH is set): nothing to compare")


def test_kernel_matches_pytorch_forward_and_backward_in_float64():
    assert msda_kernel_error("cuda", torch.float64) <= 1e-10
    inputs = msda_example_inputs("cuda", torch.float64)
    value, shapes, start, locations, weights = (t.requires_grad_(True) if t.is_floating_point() else t
                                                for t in inputs)
    kernel = MultiScaleDeformableAttnFunction.apply(value, shapes, start, locations, weights, 64)
    grads_kernel = torch.autograd.grad(kernel.square().sum(), (value, locations, weights))
    reference = multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)
    grads_reference = torch.autograd.grad(reference.square().sum(), (value, locations, weights))
    torch.testing.assert_close(kernel, reference, rtol=0, atol=1e-10)
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), grads_kernel, grads_reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8, msg=name)


def test_module_gives_the_same_output_with_the_pytorch_fallback(restore_mmcv_ops):
    torch.manual_seed(0)
    attention = MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2, num_points=4,
                                              batch_first=True).cuda()
    shapes = torch.tensor([[16, 16], [8, 8]], device="cuda")
    start = torch.tensor([0, 256], device="cuda")
    query = torch.randn(2, 320, 32, device="cuda")
    reference_points = torch.rand(2, 320, 2, 2, device="cuda")
    run = dict(query=query, reference_points=reference_points, spatial_shapes=shapes, level_start_index=start)
    with torch.no_grad():
        kernel = attention(**run)
        with pytest.warns(UserWarning, match="pure-PyTorch path"):
            use_pytorch_msdeformattn()
        fallback = attention(**run)
    torch.testing.assert_close(fallback, kernel, rtol=0, atol=1e-5)
