"""Hooks of the SoMA training recipe."""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class WeightDecayLoggerHook(Hook):
    """Put the current weight decay into the training log, next to ``lr``.

    SoMA anneals weight decay with a param scheduler on ``weight_decay``; mmengine logs the learning rate but
    not the decay, so without this the schedule cannot be checked from the logs. The logged value is the
    largest decay over the parameter groups (groups without decay stay at 0).
    """

    priority = "VERY_HIGH"  # before the LoggerHook reads the message hub

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        optimizer = runner.optim_wrapper.optimizer
        decays = [group.get("weight_decay", 0.0) for group in optimizer.param_groups]
        runner.message_hub.update_scalar("train/weight_decay", max(decays, default=0.0))


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random number generators' state with each checkpoint and restore it on ``--resume``.

    mmengine re-seeds at start-up but does not checkpoint the RNG state, so a resumed run draws different random
    numbers (Mask2Former's point sampling, dropout) than the run it continues, and ends with different weights.
    With the state restored, resuming at iteration k reproduces the uninterrupted run on CPU (data-pipeline
    randomness already matches: mmengine replays the skipped batches through the loader). tools/train.py adds
    this hook to every run.

    In a distributed run every process has its own state (its own data draws its own point samples; with
    ``randomness.diff_rank_seed`` its own seed), but mmengine saves checkpoints on rank 0 only
    (``Runner.save_checkpoint`` is ``master_only``). So the states are gathered from every process where all of
    them still run the same hooks: after a training iteration (or epoch) that a ``CheckpointHook`` saves, and
    after each validation (best checkpoints); rank 0 writes them into the checkpoint and each process restores
    its own. A run resumed with another number of processes cannot continue the streams: it keeps its fresh
    seeds and says so.
    """

    priority = "LOW"  # after the other hooks' work, before the CheckpointHook (VERY_LOW) saves
    KEY = "rng_state"  # this process's state (rank 0's in a distributed run)
    PER_RANK_KEY = "rng_state_per_rank"  # every process's state, by rank (distributed runs)

    def __init__(self) -> None:
        self._gathered: list[dict] | None = None  # every process's state at the last point all of them reached

    @staticmethod
    def _current_state() -> dict:
        state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _restore(state: dict) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _gather(self) -> None:
        from mmengine.dist import all_gather_object, get_world_size

        if get_world_size() > 1:
            self._gathered = all_gather_object(self._current_state())

    @staticmethod
    def _checkpoint_due(runner, by_epoch: bool) -> bool:
        """Whether a ``CheckpointHook`` saves after this training iteration (epoch), by its own rule."""
        from mmengine.hooks import CheckpointHook

        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_epoch(runner))
            else:
                due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner))
            if due:
                return True
        return False

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._checkpoint_due(runner, by_epoch=False):
            self._gather()

    def after_train_epoch(self, runner) -> None:
        if self._checkpoint_due(runner, by_epoch=True):
            self._gather()

    def after_val_epoch(self, runner, metrics: Any = None) -> None:
        self._gather()  # best checkpoints are saved after validation, which itself draws random numbers

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:  # rank 0 only
        state = self._current_state()
        meta = checkpoint.setdefault("meta", {})
        meta[self.KEY] = state
        gathered = self._gathered
        if gathered and torch.equal(gathered[0]["torch"], state["torch"]) and gathered[0]["python"] == state["python"]:
            meta[self.PER_RANK_KEY] = gathered  # taken at this point of the run (rank 0's state has not moved)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.dist import get_rank, get_world_size

        meta = checkpoint.get("meta", {})
        if not meta.get(self.KEY) or not runner._resume:  # load_from starts a new run: keep its fresh seed
            return
        per_rank, world_size = meta.get(self.PER_RANK_KEY), get_world_size()
        saved_by = len(per_rank) if per_rank else 1
        if saved_by != world_size:
            from mmengine.logging import print_log

            print_log(f"--resume: the checkpoint holds the random state of {saved_by} process(es) and this run has "
                      f"{world_size}: the random streams start afresh, so the run will not repeat the one it "
                      "continues exactly.", logger="current", level=logging.WARNING)
            return
        self._restore(per_rank[get_rank()] if per_rank else meta[self.KEY])


@HOOKS.register_module()
class LabelSizeCheckHook(Hook):
    """Refuse a label map whose size differs from its image's, or that has more than one channel (a colour
    image), naming the files, before the loss or metric.

    Such a pair fails deep in the loss (``IndexError: The shape of the mask ...``) or, after the pipeline
    resized both, trains on labels that do not line up with the pixels. Each pair is checked once per run from
    the file headers (no decoding). The datasets check the channels of their first and last label map when they
    are built; this checks every one. ``_base_/default_runtime.py`` names it in ``default_hooks``.
    """

    priority = "VERY_HIGH"

    def __init__(self) -> None:
        self._checked: set[str] = set()

    def _check(self, data_batch: Any) -> None:
        from PIL import Image

        from soma.datasets import check_label_channels
        from soma.utils import DataError

        samples = data_batch.get("data_samples", []) if isinstance(data_batch, dict) else []
        for sample in samples:
            meta = getattr(sample, "metainfo", {})
            image, label = meta.get("img_path"), meta.get("seg_map_path")
            if not isinstance(image, str) or not isinstance(label, str) or label in self._checked:
                continue
            check_label_channels(label)
            try:
                with Image.open(image) as img, Image.open(label) as lab:
                    image_size, label_size = img.size, lab.size
            except OSError:
                continue  # unreadable files are reported by the loaders, which name them
            if image_size != label_size:
                raise DataError(f"label map '{label}' is {label_size[0]}x{label_size[1]} but its image '{image}' is "
                                f"{image_size[0]}x{image_size[1]} (width x height); a label map must have its "
                                "image's size: is it the right file, or was one of them resized? Re-convert the "
                                "pair or remove it from the dataset.")
            self._checked.add(label)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._check(data_batch)

    def before_val_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._check(data_batch)

    def before_test_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self._check(data_batch)
