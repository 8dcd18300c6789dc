"""The process-wide settings a training or test run needs, applied explicitly (importing ``soma`` applies none).

:func:`setup_runtime` is what tools/train.py and tools/test.py call before they build mmengine's Runner:

* mmengine's local checkpoint loader unpickles fully only the files named here (the ``load_from``/``--resume``
  checkpoint, the checkpoint given to tools/test.py) and loads every other file ``weights_only=True``
  (pretrained weights, ``init_cfg=Pretrained``, anything a hook loads): a foreign file never runs pickled code;
* mmengine's local file writes (checkpoints, ``last_checkpoint``) go through a temporary file and a rename, so
  a killed job never leaves a truncated checkpoint (:func:`soma.utils.register_atomic_local_backend`);
* ``SOMA_MSDA_PYTORCH=1`` routes mmcv's deformable attention to its pure-PyTorch function, and on a GPU an
  mmcv built without CUDA ops names the op and the fix (:func:`soma.utils.configure_mmcv_ops`).

Code that builds mmengine's ``Runner`` itself calls it once first, naming the checkpoint it loads::

    from soma.utils.runtime import setup_runtime
    setup_runtime(trusted_checkpoints=[cfg.load_from])
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from .checkpoint import register_atomic_local_backend, register_local_checkpoint_loader, trust_checkpoint
from .mmcv_ops import configure_mmcv_ops

__all__ = ["setup_runtime", "trust_checkpoint"]


def setup_runtime(trusted_checkpoints: Iterable[str | os.PathLike | None] = ()) -> None:
    """Apply SoMA's checkpoint loading policy, atomic checkpoint writes and mmcv op settings; idempotent.

    Args:
        trusted_checkpoints: local checkpoint files the user named (``load_from``, ``--resume``, a test
            checkpoint) that mmengine may unpickle fully; ``None`` entries and URLs are skipped (mmengine's
            loaders of remote files load ``weights_only``). More can be added later with
            :func:`soma.utils.trust_checkpoint`.
    """
    register_local_checkpoint_loader()
    register_atomic_local_backend()
    configure_mmcv_ops()
    for path in trusted_checkpoints:
        if path and "://" not in os.fspath(path):
            trust_checkpoint(path)
