"""Hooks of the SoMA training recipe."""
from __future__ import annotations

import random

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
    """

    priority = "VERY_LOW"  # save the state as the last hook sees it, restore it after the others loaded theirs
    KEY = "rng_state"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault("meta", {})[self.KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("meta", {}).get(self.KEY)
        if not state or not runner._resume:  # load_from starts a new run: keep its fresh seed
            return
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
