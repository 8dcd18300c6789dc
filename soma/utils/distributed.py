"""Distributed runs on machines without GPUs."""
from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.config import Config


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
