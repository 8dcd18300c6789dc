"""Optimizer-wrapper construction for models that are mostly frozen."""
from __future__ import annotations

import logging

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


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
    """mmengine's default constructor (``paramwise_cfg`` and all), logging frozen parameters in one line.

    mmengine warns once per parameter without ``requires_grad``; with SoMA on a ViT-L that is ~300 warnings
    at every start, which hide the warnings that matter. The parameter groups are exactly the default ones.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
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
