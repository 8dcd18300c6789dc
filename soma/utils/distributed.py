"""Distributed runs on machines without GPUs, and the device a tool is asked to run on."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from mmengine.config import Config

from .errors import UserError


def check_device(device: str) -> None:
    """Refuse a ``--device`` this machine does not have, before the model is built.

    Raises:
        UserError: not a torch device name, a CUDA device without CUDA, or a GPU index beyond the visible ones.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r} is no torch device; give e.g. cpu, cuda or cuda:0.") from None
    if parsed.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise UserError(f"--device {device!r}: this machine has no CUDA GPU visible to torch; use --device cpu.")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UserError(f"--device {device!r}: this machine shows {torch.cuda.device_count()} GPU(s) "
                        f"(cuda:0-cuda:{torch.cuda.device_count() - 1}); give one of them.")


def use_cpu_distributed(cfg: Config) -> None:
    """Without CUDA: a gloo process group and a DDP wrapper for CPU modules; no-op when CUDA is available.

    mmengine's own initialisation always selects a CUDA device, so the process group is created here first
    (the Runner then finds it initialised). Call it after the launcher (torchrun) set the environment.
    """
    if torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    cfg.model_wrapper_cfg = dict(type="CPUDistributedDataParallel")


@contextlib.contextmanager
def process_group_destroyed_at_exit() -> Iterator[None]:
    """Destroy the default process group (if the run made one) when the block ends, errors included.

    A process that exits with its group alive can abort in interpreter finalisation: gloo's worker threads still
    hold work objects whose tensors need the GIL ("terminate called without an active exception", SIGABRT,
    seen on a 2-process CPU run that had finished). torch asks programs to call ``destroy_process_group``.
    """
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
