"""mmcv's compiled ops on GPUs: the pure-PyTorch fallback of deformable attention, and clear errors for the rest.

mmcv 2.1.0 has no wheels; ``tools/setup.sh`` builds it, with its CUDA ops only where nvcc and a CUDA torch are
present. An mmcv built without them (on a CPU login node, or where the build does not fit) imports fine, and
the first compiled op called on a CUDA tensor fails deep in C++. Two things help:

* ``SOMA_MSDA_PYTORCH=1`` (read by :func:`soma.utils.runtime.setup_runtime`, which the tools call; or
  :func:`use_pytorch_msdeformattn`) runs mmcv's ``MultiScaleDeformableAttention``
  — Mask2Former's pixel decoder, DINO's encoder and decoder — through mmcv's own pure-PyTorch function
  ``multi_scale_deformable_attn_pytorch`` (``grid_sample`` per level) on every device, with a warning about the
  cost. It is mmcv's reference for the kernel (tests/test_gpu compares the two on a GPU). Any mmcv build can
  then train Mask2Former.
* Where CUDA is available but mmcv has no CUDA ops, every other compiled op raises an error that names it
  and says what to do (:func:`explain_missing_cuda_ops`). DINO's sigmoid focal loss is one of them.
"""
from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType
from typing import Any, Callable

import torch

ENV_MSDA_PYTORCH = "SOMA_MSDA_PYTORCH"
REBUILD_HINT = ("rebuild mmcv with its CUDA ops on a machine with nvcc and the GPU's CUDA torch "
                "(`bash tools/setup.sh`; README, 'GPU machines')")
MSDA_COST = (
    "MultiScaleDeformableAttention runs mmcv's pure-PyTorch path (multi_scale_deformable_attn_pytorch: one "
    "grid_sample per feature level) instead of mmcv's CUDA kernel. It computes the same values, but is slower and "
    "keeps num_levels x num_points sampled values per query and channel for the backward pass: for Mask2Former at "
    "512x512 (5376 queries, 256 channels, 3 levels, 4 points) about 66 MB per image and encoder layer, 1.6 GB more "
    "for 6 layers at batch 4. Unset SOMA_MSDA_PYTORCH once mmcv has its CUDA ops.")


def mmcv_has_cuda_ops() -> bool:
    """Whether the installed mmcv was compiled with its CUDA ops (asks mmcv's extension; runs no kernel)."""
    from mmcv.ops import get_compiling_cuda_version

    return get_compiling_cuda_version() not in ("not available", "")


def _msda_pytorch_apply(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                        sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                        im2col_step: int) -> torch.Tensor:
    """``MultiScaleDeformableAttnFunction.apply``'s signature, computed by mmcv's pure-PyTorch function."""
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

    return multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


_msda_pytorch_apply._soma_pytorch_msda = True


def msda_uses_pytorch() -> bool:
    """Whether :func:`use_pytorch_msdeformattn` is in effect (through any ``float32_for_bf16`` wrapper)."""
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    fn = MultiScaleDeformableAttnFunction.apply
    while fn is not None:
        if getattr(fn, "_soma_pytorch_msda", False):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def use_pytorch_msdeformattn() -> None:
    """Run ``MultiScaleDeformableAttention`` through mmcv's pure-PyTorch function on every device; idempotent.

    mmcv's module calls ``MultiScaleDeformableAttnFunction.apply`` for CUDA tensors (looked up at call time),
    which is what is replaced; on CPU it already uses the PyTorch function. Warns with :data:`MSDA_COST`.
    """
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    if msda_uses_pytorch():
        return
    MultiScaleDeformableAttnFunction.apply = _msda_pytorch_apply
    warnings.warn(MSDA_COST, stacklevel=2)


def _explained(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuntimeError as error:
            if "implementation for device cuda" not in str(error):
                raise
            hint = (" For MultiScaleDeformableAttention, SOMA_MSDA_PYTORCH=1 runs mmcv's pure-PyTorch path instead "
                    "(slower, more memory)." if name.startswith("ms_deform_attn") else "")
            raise RuntimeError(f"mmcv was built without its CUDA ops, so its compiled op `{name}` cannot run on the "
                               f"GPU: {REBUILD_HINT}.{hint}") from error

    wrapped._soma_explained = True
    return wrapped


def explain_missing_cuda_ops(ext_module: ModuleType) -> None:
    """Wrap each op of mmcv's compiled extension so that "no CUDA implementation" names the op and the fix.

    mmcv's Python ops look their kernels up on the extension module at call time, so replacing the module's
    attributes reaches every caller. Idempotent.
    """
    for name in dir(ext_module):
        fn = getattr(ext_module, name)
        if name.startswith("_") or not callable(fn) or getattr(fn, "_soma_explained", False):
            continue
        setattr(ext_module, name, _explained(name, fn))


def configure_mmcv_ops() -> None:
    """Apply ``SOMA_MSDA_PYTORCH`` and, where CUDA is available but mmcv has no CUDA ops, the explained errors;
    idempotent. Called by :func:`soma.utils.runtime.setup_runtime` (importing ``soma`` patches nothing)."""
    if os.environ.get(ENV_MSDA_PYTORCH, "0") not in ("0", ""):
        use_pytorch_msdeformattn()
    if torch.cuda.is_available() and not mmcv_has_cuda_ops():
        import mmcv._ext

        explain_missing_cuda_ops(mmcv._ext)


def msda_example_inputs(device: str | torch.device, dtype: torch.dtype = torch.float64,
                        seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Small random inputs of ``MultiScaleDeformableAttnFunction``: ``(value, spatial_shapes, level_start_index,
    sampling_locations, attention_weights)``; 2 images, 2 heads of 8 channels, levels 6×4 and 3×2, 5 queries,
    3 points, some sampling locations outside the map (zero padding)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[6, 4], [3, 2]])
    start = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(2, keys, 2, 8, generator=generator, dtype=torch.float64)
    locations = torch.rand(2, 5, 2, 2, 3, 2, generator=generator, dtype=torch.float64) * 1.2 - 0.1
    weights = torch.rand(2, 5, 2, 2, 3, generator=generator, dtype=torch.float64)
    weights = weights / weights.sum((-2, -1), keepdim=True)
    return (value.to(device, dtype), shapes.to(device), start.to(device), locations.to(device, dtype),
            weights.to(device, dtype))


def msda_kernel_error(device: str | torch.device = "cuda", dtype: torch.dtype = torch.float64) -> float:
    """Largest absolute difference between mmcv's compiled MSDA forward kernel and its pure-PyTorch function on
    :func:`msda_example_inputs` (``tools/setup.sh``'s check on GPU machines; about 1e-16 in float64)."""
    from mmcv.ops.multi_scale_deform_attn import ext_module, multi_scale_deformable_attn_pytorch

    value, shapes, start, locations, weights = msda_example_inputs(device, dtype)
    kernel = ext_module.ms_deform_attn_forward(value, shapes, start, locations, weights, im2col_step=64)
    reference = multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)
    return (kernel - reference).abs().max().item()
