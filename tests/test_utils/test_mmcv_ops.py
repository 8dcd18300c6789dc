"""SOMA_MSDA_PYTORCH routes mmcv's deformable attention to its pure-PyTorch function; missing CUDA ops are named.

On CPU mmcv's module already takes the PyTorch path; what the option changes is
``MultiScaleDeformableAttnFunction.apply``, which the module calls for CUDA tensors, so that is called directly.
"""
import types
from pathlib import Path

import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)

from soma.utils import mmcv_ops
from soma.utils.mmcv_ops import (
    explain_missing_cuda_ops,
    msda_example_inputs,
    msda_uses_pytorch,
    use_pytorch_msdeformattn,
)
from soma.config.run import run_mmcv_ops_in_float32_under_bf16


@pytest.fixture
def restore_msda(monkeypatch):
    import mmdet.models.losses.focal_loss as focal_loss

    monkeypatch.setattr(MultiScaleDeformableAttnFunction, "apply", MultiScaleDeformableAttnFunction.apply)
    monkeypatch.setattr(focal_loss, "_sigmoid_focal_loss", focal_loss._sigmoid_focal_loss)


def test_option_routes_msda_to_the_pytorch_function_and_warns_with_the_cost(restore_msda, monkeypatch):
    calls = []
    import mmcv.ops.multi_scale_deform_attn as msda_module

    def spy(*args):
        calls.append(args)
        return multi_scale_deformable_attn_pytorch(*args)

    monkeypatch.setattr(msda_module, "multi_scale_deformable_attn_pytorch", spy)
    assert not msda_uses_pytorch()
    with pytest.warns(UserWarning, match=r"pure-PyTorch path .* slower .* 1\.6 GB"):
        use_pytorch_msdeformattn()
    assert msda_uses_pytorch()
    value, shapes, start, locations, weights = msda_example_inputs("cpu", torch.float64)
    value.requires_grad_(True)
    out = MultiScaleDeformableAttnFunction.apply(value, shapes, start, locations, weights, 64)
    assert len(calls) == 1
    torch.testing.assert_close(out, multi_scale_deformable_attn_pytorch(value, shapes, locations, weights),
                               rtol=0, atol=0)
    out.sum().backward()  # trainable through the PyTorch path
    assert value.grad is not None and value.grad.abs().sum() > 0


def test_option_is_idempotent_and_survives_the_bf16_wrapper(restore_msda):
    with pytest.warns(UserWarning):
        use_pytorch_msdeformattn()
    run_mmcv_ops_in_float32_under_bf16()  # what resolve_amp does for bf16 on a GPU
    wrapped = MultiScaleDeformableAttnFunction.apply
    assert msda_uses_pytorch() and getattr(wrapped, "_float32_for_bf16", False)
    use_pytorch_msdeformattn()  # no second replacement, no second warning
    assert MultiScaleDeformableAttnFunction.apply is wrapped
    value, shapes, start, locations, weights = msda_example_inputs("cpu", torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = MultiScaleDeformableAttnFunction.apply(value, shapes, start, locations, weights, 64)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_missing_cuda_op_error_names_the_op_and_the_fix():
    def ms_deform_attn_forward(*args, **kwargs):
        raise RuntimeError("ms_deform_attn_impl_forward: implementation for device cuda:0 not found.")

    def sigmoid_focal_loss_forward(*args, **kwargs):
        raise RuntimeError("sigmoid_focal_loss_forward_impl: implementation for device cuda:0 not found.")

    def nms(*args, **kwargs):
        raise RuntimeError("some other failure")

    ext = types.SimpleNamespace(ms_deform_attn_forward=ms_deform_attn_forward,
                                sigmoid_focal_loss_forward=sigmoid_focal_loss_forward, nms=nms, _private=nms)
    explain_missing_cuda_ops(ext)
    explain_missing_cuda_ops(ext)  # idempotent: wrapped once
    with pytest.raises(RuntimeError, match=r"`ms_deform_attn_forward` cannot run on the GPU: rebuild mmcv.*"
                                           r"SOMA_MSDA_PYTORCH=1"):
        ext.ms_deform_attn_forward()
    with pytest.raises(RuntimeError, match=r"`sigmoid_focal_loss_forward` cannot run on the GPU") as error:
        ext.sigmoid_focal_loss_forward()
    assert "SOMA_MSDA_PYTORCH" not in str(error.value)
    with pytest.raises(RuntimeError, match="^some other failure$"):  # other errors pass through unchanged
        ext.nms()
    assert ext._private is nms


def test_reports_whether_the_compiled_extension_holds_cuda_kernels():
    """Told against the extension binary itself: a build with CUDA ops links torch's CUDA (or ROCm) runtime
    library and holds mmcv's CUDA kernel launchers (``ms_deform_attn_cuda_forward``, in mmcv/ops/csrc/pytorch/cuda/
    only); a CPU build has neither."""
    import mmcv._ext

    binary = Path(mmcv._ext.__file__).read_bytes()
    has_cuda_kernels = any(marker in binary for marker in (b"libc10_cuda.so", b"libc10_hip.so",
                                                           b"ms_deform_attn_cuda_forward"))
    assert mmcv_ops.mmcv_has_cuda_ops() is has_cuda_kernels
