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
from collections.abc import Callable, Mapping
from typing import Any

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

from .classes import check_num_classes
from .domains import check_domain_datasets, check_mean_over
from .legacy import check_legacy_keys
from .loading import load_config
from .options import check_component_options
from .padding import warn_patch_padding
from .type_names import check_config_types
from soma.utils.distributed import use_cpu_distributed
from soma.utils.errors import ConfigError
from .loops import check_loop_options
from soma.utils.outputs import check_writable_dir

AMP_DTYPES = ("auto", "bfloat16", "float16", "float32")  # float32: no AMP (the plain OptimWrapper)
# Options only mmengine's AmpOptimWrapper takes; the plain OptimWrapper would reject them.
_AMP_ONLY_KEYS = ("dtype", "loss_scale", "use_fsdp")


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` whose malformed items (no ``=``) end in argparse's usage error, not a traceback."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        malformed = [item for item in (values if isinstance(values, list) else [values]) if "=" not in str(item)]
        if malformed:
            parser.error(f"{option_string} takes KEY=VALUE items (e.g. train_cfg.max_iters=1000); got "
                         f"{', '.join(repr(item) for item in malformed)}")
        super().__call__(parser, namespace, values, option_string)


def add_runner_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """``--work-dir``, ``--cfg-options``, ``--non-strict``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument("--work-dir", help=f"{work_dir_help} (default: work_dirs/CONFIG_NAME)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, help="override config keys: a.b=value")
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
    (:mod:`soma.config`). ``--non-strict`` becomes ``strict_loading = False`` (read by
    :class:`soma.engine.SoMARunner`); ``args.seed`` (tools/train.py's ``--seed``) becomes ``randomness.seed``.
    ``args.amp`` (tools/train.py's ``--amp``) asks for AMP on a config without it; the AMP settings are resolved
    for this machine by the optimizer-wrapper constructor the schedule names
    (:class:`soma.engine.FrozenAwareOptimWrapperConstructor`, through :func:`resolve_amp`).
    """
    if args.launcher == "pytorch":
        check_launcher_environment()
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        merge_cfg_options(cfg, args.cfg_options)
    check_legacy_keys(cfg, f"config '{args.config}'")
    check_config_types(cfg)  # unknown `type=` names fail now, with the closest registered names
    check_component_options(cfg)  # so do unknown options of our metrics, hooks and datasets
    check_loop_options(cfg)  # mmengine's TypeError would come after the model and datasets are built
    check_peft_options(cfg)
    check_num_classes(cfg)
    check_domain_datasets(cfg)  # a per-domain metric over datasets without domains would fail only at evaluation
    check_mean_over(cfg)  # so would a `mean_over` domain the datasets do not have
    warn_patch_padding(cfg)
    if getattr(args, "non_strict", False):
        cfg.strict_loading = False
    if getattr(args, "seed", None) is not None:  # tools/train.py --seed: a study's runs differ only here
        cfg.randomness = dict(cfg.get("randomness") or {}, seed=args.seed)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0])
    check_writable_dir(cfg.work_dir, "--work-dir")  # mmengine writes there only once the model is built
    if cfg.get("optim_wrapper") is not None:
        if getattr(args, "amp", False):
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("dtype", "auto")
            cfg.optim_wrapper.setdefault("constructor", "FrozenAwareOptimWrapperConstructor")
    if args.launcher != "none":
        use_cpu_distributed(cfg)
    return cfg


def merge_cfg_options(cfg: Config, options: Mapping[str, Any]) -> None:
    """``--cfg-options`` merged into ``cfg``.

    Raises:
        ConfigError: an option sets a key inside a value that is no dict (``model.backbone.init_cfg.checkpoint``
            where ``init_cfg`` is None), which mmengine reports as a ``TypeError`` about "child" and "base" configs.
    """
    try:
        cfg.merge_from_dict(options)
    except TypeError:
        for key in options:
            blocking = _value_in_the_way(cfg.to_dict(), key.split("."))
            if blocking is not None:
                prefix, value = blocking
                raise ConfigError(
                    f"--cfg-options {key}=...: `{prefix}` is {value!r} in the config, so it has no key "
                    f"`{key[len(prefix) + 1:]}` to set; set the whole `{prefix}` in a config that inherits this "
                    "one (`_base_`), with `_delete_=True` in it.") from None
        raise


def _value_in_the_way(node: Any, parts: list[str]) -> tuple[str, Any] | None:
    """``(key path, value)`` of the first existing value on the way to ``parts`` that holds no keys."""
    for depth, part in enumerate(parts[:-1], start=1):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None  # a new key: mmengine creates it
        if not isinstance(node, (Mapping, list)):
            return ".".join(parts[:depth]), node
    return None


# Variables torchrun sets for each process; `--launcher pytorch` without them fails deep in torch.distributed.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def check_launcher_environment() -> None:
    """Refuse ``--launcher pytorch`` outside torchrun (tools/dist_train.sh, tools/dist_test.sh).

    Raises:
        ConfigError: a variable torchrun sets is missing.
    """
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(f"--launcher pytorch is for processes started by torchrun, which sets {missing}: start "
                          "distributed runs with bash tools/dist_train.sh CONFIG GPUS (or tools/dist_test.sh), or "
                          "leave out --launcher for one process.")


def check_peft_options(cfg: Config) -> None:
    """The backbone's adapter options (``model.backbone.peft``), checked before the model is built: an unknown
    option or a value out of range (``r=-1``) is named with the config key instead of a traceback from the build.

    Raises:
        ConfigError: the adapter method refuses the options.
    """
    model = cfg.get("model")
    backbone = model.get("backbone") if isinstance(model, Mapping) else None
    peft = backbone.get("peft") if isinstance(backbone, Mapping) else None
    if not isinstance(peft, Mapping):
        return
    from soma.peft.registry import build_peft_config

    try:
        build_peft_config(peft.to_dict() if hasattr(peft, "to_dict") else dict(peft))
    except ImportError:  # a method whose package is not installed: the build names it
        return
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"`model.backbone.peft`: {exc.args[0] if exc.args else exc}") from None


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
