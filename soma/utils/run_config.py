"""What tools/train.py and tools/test.py do alike: the shared options and loading the run's config.

Mixed precision is decided here, in one place (:func:`resolve_amp`): the schedule asks for mmengine's
``AmpOptimWrapper`` with ``dtype="auto"``; on a GPU that becomes bf16 where the GPU has it and fp16 with dynamic
loss scaling otherwise, and on a machine without CUDA (where mmengine's AMP wrapper refuses to run) the plain
``OptimWrapper`` in float32, with a warning.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import os.path as osp
from collections.abc import Callable
from typing import Any

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

from .config_check import (check_component_options, check_config_types, check_domain_datasets, check_legacy_keys,
                           check_mean_over, check_num_classes, load_config, warn_patch_padding)
from .distributed import use_cpu_distributed

AMP_DTYPES = ("auto", "bfloat16", "float16", "float32")  # float32: no AMP (the plain OptimWrapper)
# Options only mmengine's AmpOptimWrapper takes; the plain OptimWrapper would reject them.
_AMP_ONLY_KEYS = ("dtype", "loss_scale", "use_fsdp")


def add_runner_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """``--work-dir``, ``--cfg-options``, ``--non-strict``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument("--work-dir", help=f"{work_dir_help} (default: work_dirs/CONFIG_NAME)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: a.b=value")
    parser.add_argument("--non-strict", action="store_true",
                        help="load a checkpoint that does not fit the model: only the tensors that fit, the rest "
                             "listed in the log (for experts; by default such a checkpoint is refused)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def load_run_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the command-line overrides, its types checked before any build.

    Sets the work dir and launcher; under a launcher on a machine without GPUs, switches to gloo and a CPU
    DDP wrapper. Refuses legacy keys, unknown options of SoMA's metrics, hooks and datasets, head/dataset class
    counts that differ, per-domain metrics over datasets without domains and ``mean_over`` domains the datasets do
    not have, and warns about crop sizes that are not a multiple of the patch size
    (:mod:`soma.utils.config_check`). ``--non-strict`` becomes ``strict_loading = False`` (read by
    :class:`soma.engine.SoMARunner`). ``args.amp`` (tools/train.py's ``--amp``) asks for AMP on a config without
    it; the AMP settings are then resolved for this machine by :func:`resolve_amp`.
    """
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_legacy_keys(cfg, f"config '{args.config}'")
    check_config_types(cfg)  # unknown `type=` names fail now, with the closest registered names
    check_component_options(cfg)  # so do unknown options of our metrics, hooks and datasets
    check_num_classes(cfg)
    check_domain_datasets(cfg)  # a per-domain metric over datasets without domains would fail only at evaluation
    check_mean_over(cfg)  # so would a `mean_over` domain the datasets do not have
    warn_patch_padding(cfg)
    if getattr(args, "non_strict", False):
        cfg.strict_loading = False
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0])
    if cfg.get("optim_wrapper") is not None:
        if getattr(args, "amp", False):
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("dtype", "auto")
        cfg.optim_wrapper = resolve_amp(cfg.optim_wrapper)
    if args.launcher != "none":
        use_cpu_distributed(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------- AMP
def is_amp_wrapper(optim_wrapper: dict) -> bool:
    """Whether an optimizer-wrapper config names mmengine's ``AmpOptimWrapper`` (by name, scoped name or class)."""
    kind = optim_wrapper.get("type", "OptimWrapper")
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
    return name.rpartition(".")[2] == "AmpOptimWrapper"


def bf16_supported() -> bool:
    """Whether the current CUDA device computes in bf16 natively (Ampere and later), not by emulation."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # PyTorch before the `including_emulation` argument
        return torch.cuda.is_bf16_supported()


def resolve_amp(optim_wrapper: dict, device: str | None = None) -> ConfigDict:
    """The optimizer-wrapper config ``device`` can run; configs without AMP come back unchanged.

    For an ``AmpOptimWrapper``:

    * without CUDA: the plain ``OptimWrapper`` (float32) and a logged warning — mmengine's AMP wrapper
      asserts a GPU, and CPU runs (tests, the demo) must still work from the same configs;
    * ``dtype="float32"``: the plain ``OptimWrapper`` (e.g. ``--cfg-options optim_wrapper.dtype=float32`` trains a
      benchmark config in float32, as the released SoMA code did);
    * ``dtype="auto"`` (or unset): ``"bfloat16"`` where :func:`bf16_supported`, else ``"float16"`` with the
      config's ``loss_scale`` (``"dynamic"`` by default — fp16 gradients underflow without it). bf16 has
      float32's range, so its loss scaling is only a harmless extra check for inf/NaN;
    * bf16 also routes the mmcv/mmdet CUDA kernels that have no bf16 version through float32
      (:func:`run_mmcv_ops_in_float32_under_bf16`).

    Args:
        optim_wrapper: the config's ``optim_wrapper`` (not modified).
        device: ``"cuda"`` or ``"cpu"``. Default: ``"cuda"`` if CUDA is available.

    Raises:
        ValueError: ``dtype`` is not one of :data:`AMP_DTYPES`, or ``device`` is neither ``"cuda"`` nor ``"cpu"``.
    """
    optim_wrapper = ConfigDict(optim_wrapper)
    if not is_amp_wrapper(optim_wrapper):
        return optim_wrapper
    dtype = optim_wrapper.get("dtype") or "auto"
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in AMP_DTYPES:
        raise ValueError(f"`optim_wrapper.dtype` must be one of {AMP_DTYPES} for AMP, got {dtype!r}.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"`device` must be 'cuda' or 'cpu', got {device!r}.")
    if device == "cpu" or dtype == "float32":
        if dtype != "float32":
            print_log("AMP (AmpOptimWrapper) needs a GPU and this run is on the CPU: training in float32 with the "
                      "plain OptimWrapper instead.", logger="current", level=logging.WARNING)
        for key in _AMP_ONLY_KEYS:
            optim_wrapper.pop(key, None)
        optim_wrapper.type = "OptimWrapper"
        return optim_wrapper
    if dtype == "auto":
        dtype = "bfloat16" if bf16_supported() else "float16"
    optim_wrapper.dtype = dtype
    optim_wrapper.setdefault("loss_scale", "dynamic")
    if dtype == "bfloat16":
        run_mmcv_ops_in_float32_under_bf16()
    print_log(f"AMP: autocast to {dtype}, loss scale {optim_wrapper.loss_scale!r}.", logger="current")
    return optim_wrapper


def float32_for_bf16(fn: Callable[..., Any], restore_dtype: bool = True) -> Callable[..., Any]:
    """``fn`` that runs in float32 (autocast off) when a tensor argument is bf16; other calls pass through.

    For CUDA kernels compiled for float32/float16 only.

    Args:
        fn: the function to wrap (returned as is if already wrapped).
        restore_dtype: cast a floating-point tensor result back to bf16. ``False`` keeps it in float32, as
            autocast does for losses.
    """
    if getattr(fn, "_float32_for_bf16", False):
        return fn

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not any(isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)

        def up(a: Any) -> Any:
            return a.float() if isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 else a

        device = next(a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        with torch.autocast(device, enabled=False):
            out = fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
        if restore_dtype and isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.to(torch.bfloat16)
        return out

    wrapped._float32_for_bf16 = True
    return wrapped


def run_mmcv_ops_in_float32_under_bf16() -> None:
    """Route mmcv's CUDA kernels without a bf16 version through :func:`float32_for_bf16`; idempotent.

    mmcv's multi-scale deformable attention (Mask2Former's pixel decoder, DINO's encoder/decoder) and sigmoid
    focal loss (DINO's classification loss) dispatch on float32/float16 only, so bf16 autocast fails with
    "... not implemented for 'BFloat16'" (open-mmlab/mmcv#2878, #3061). Both are looked up at call time,
    which is what is replaced here; float16 and float32 calls are unchanged.
    """
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    targets: list[tuple[Any, str, bool]] = [(MultiScaleDeformableAttnFunction, "apply", True)]
    try:
        import mmdet.models.losses.focal_loss as focal_loss
        targets.append((focal_loss, "_sigmoid_focal_loss", False))  # a loss: stays float32
    except ImportError:  # segmentation-only installs
        pass
    for owner, name, restore_dtype in targets:
        setattr(owner, name, float32_for_bf16(getattr(owner, name), restore_dtype))
