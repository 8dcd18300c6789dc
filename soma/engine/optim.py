"""Optimizer-wrapper construction for models that are mostly frozen, with the mixed precision the machine has."""
from __future__ import annotations

import logging

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from soma.config.run import resolve_amp


class _FrozenParameterWarnings(logging.Filter):
    """Swallows mmengine's one-warning-per-frozen-parameter messages and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "is skipped since its requires_grad=False" in record.getMessage():
            self.count += 1
            return False
        return True


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenAwareOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor (``paramwise_cfg`` and all), logging frozen parameters in one line and
    resolving an ``AmpOptimWrapper`` for this machine.

    mmengine warns once per parameter without ``requires_grad``; with SoMA on a ViT-L that is ~300 warnings
    at every start, which hide the warnings that matter. The parameter groups are exactly the default ones.
    ``AmpOptimWrapper`` with ``dtype="auto"`` becomes bf16 or fp16 on a GPU and the plain float32 ``OptimWrapper``
    on the CPU (:func:`soma.config.run.resolve_amp`): the schedule names this constructor, so a config trains alike
    through tools/train.py and plain mmengine (``Runner.from_cfg``).
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        self.optim_wrapper_cfg = resolve_amp(self.optim_wrapper_cfg)  # the Runner puts the model on the GPU if any
        logger = MMLogger.get_current_instance()
        frozen = _FrozenParameterWarnings()
        logger.addFilter(frozen)
        try:
            wrapper = super().__call__(model)
        finally:
            logger.removeFilter(frozen)
        if frozen.count:
            values = sum(p.numel() for p in model.parameters() if not p.requires_grad)
            print_log(f"optimizer: {frozen.count} frozen parameter tensors ({values:,} values) are not optimised.",
                      logger="current")
        return wrapper
