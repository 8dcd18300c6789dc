"""Hooks of the SoMA training recipe."""
from __future__ import annotations

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
