"""Keys of mmseg 0.x / mmcv 1.x configs that mmengine silently ignores (``resume_from``, ``total_iters``,
``workflow``, ...), refused with their modern spelling.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from mmengine.config import Config

from soma.utils.errors import ConfigError


# ---------------------------------------------------------------------------------------------- legacy keys
# Keys of mmseg 0.x / mmcv 1.x configs that mmengine's Runner ignores without a word, and what replaces them.
LEGACY_KEYS = {
    "resume_from": "`load_from = '<checkpoint>'` with `resume = True` (or tools/train.py --resume)",
    "auto_resume": "tools/train.py --resume (or `resume = True`)",
    "total_iters": "`train_cfg = dict(type='IterBasedTrainLoop', max_iters=N, val_interval=...)`",
    "total_epochs": "`train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=N)`",
    "runner": "`train_cfg = dict(type='IterBasedTrainLoop', max_iters=N, val_interval=...)`",
    "workflow": "`train_cfg = dict(..., val_interval=N)` (validation every N iterations)",
    "evaluation": "`train_cfg = dict(..., val_interval=N)` and `val_evaluator = dict(type=...)`",
    "checkpoint_config": "`default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=N))`",
    "log_config": "`default_hooks = dict(logger=dict(type='LoggerHook', interval=N))`",
    "lr_config": "`param_scheduler = [dict(type='PolyLR', ...)]`",
    "momentum_config": "`param_scheduler = [...]` (a scheduler with `param_name='momentum'`)",
    "optimizer_config": "`optim_wrapper = dict(optimizer=..., clip_grad=...)`",
    "dist_params": "`env_cfg = dict(dist_cfg=dict(backend=...))`",
    "gpu_ids": "the GPU count of tools/dist_train.sh CONFIG GPUS",
}


def check_legacy_keys(cfg: Config, source: str | os.PathLike = "the config") -> None:
    """Refuse keys that mmengine ignores but older mmseg configs used, naming the modern spelling.

    ``optimizer`` and ``data`` count only in their old roles: ``optimizer`` without an ``optim_wrapper``, and
    ``data`` holding ``samples_per_gpu``/``train``.

    Raises:
        ConfigError: a legacy key is present.
    """
    found = {key: modern for key, modern in LEGACY_KEYS.items() if key in cfg}
    if "optimizer" in cfg and not cfg.get("optim_wrapper"):
        found["optimizer"] = "`optim_wrapper = dict(type='OptimWrapper', optimizer=dict(...))`"
    data = cfg.get("data")
    if isinstance(data, Mapping) and ({"samples_per_gpu", "workers_per_gpu", "train"} & set(data)):
        found["data"] = "`train_dataloader`, `val_dataloader` and `test_dataloader` (each with its `dataset`)"
    if found:
        listed = "; ".join(f"`{key}` → {modern}" for key, modern in found.items())
        raise ConfigError(f"{source} uses keys of older mmseg/mmcv configs that the current Runner ignores "
                          f"(the run would silently do something else): {listed}.")
