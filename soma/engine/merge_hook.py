"""Evaluate with the adapters (any method) merged into their base weights, train with them apart."""
from __future__ import annotations

import logging

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from soma.peft import adapter_layers, merge_adapters, unmerge_adapters

__all__ = ["MergeAdaptersHook"]


def low_precision_bases(model: torch.nn.Module) -> list[torch.dtype]:
    """The dtypes of the adapted layers' base weights narrower than float32 (empty when every one is float32+)."""
    return [layer.base_layer.weight.dtype for layer in adapter_layers(model).values()
            if getattr(getattr(layer, "base_layer", None), "weight", None) is not None
            and layer.base_layer.weight.dtype.itemsize < 4]


@HOOKS.register_module()
class MergeAdaptersHook(Hook):
    """Fold every adapter layer into its base weight for validation and testing, and take it out afterwards.

    Merged, an adapted Linear costs what the plain Linear costs, so evaluation runs at the speed of the
    un-adapted backbone with the same outputs (up to float rounding). Models without adapter layers (frozen,
    full fine-tuning, an already merged checkpoint) are left alone; adapter modules (which have no weight to
    fold into) stay as they are.

    Order with mmengine's ``EMAHook`` (priority ``NORMAL``), which swaps the averaged weights in at
    ``before_val_epoch`` and out at ``after_val_epoch``: the merge must act on the weights that are
    evaluated and be undone before they are swapped out. So the merge happens at the first
    ``before_val_iter``/``before_test_iter`` (after every ``before_*_epoch``), and this hook's priority
    (``ABOVE_NORMAL``) puts the unmerge at ``after_*_epoch`` before the EMA swap and before a ``save_best``
    checkpoint (``CheckpointHook`` is ``VERY_LOW``). Training always resumes unmerged; each merge/unmerge
    round trip changes float32 frozen weights by float rounding only (about one ulp).

    A base stored in bfloat16/float16 (``frozen_dtype``) is not merged: there a round trip moves the frozen
    weights by up to one bf16 ulp (relative 2**-8) at every evaluation, and the moves add up over a run. Such a
    model is evaluated with its adapters apart (same outputs, the adapters' small extra cost), logged once.

    Args:
        safe_merge: check merged weights for NaN/Inf before writing them (see :func:`soma.peft.merge_adapters`).
    """

    priority = "ABOVE_NORMAL"

    def __init__(self, safe_merge: bool = False) -> None:
        self.safe_merge = safe_merge
        self._told_low_precision = False

    @staticmethod
    def _layers_merged(runner) -> list[bool]:
        return [layer.merged for layer in adapter_layers(runner.model).values()]

    def _merge(self, runner) -> None:
        # adapter_layers walks named_modules(), so DDP and TTA wrappers need no unwrapping.
        if all(self._layers_merged(runner)):
            return
        low_precision = low_precision_bases(runner.model)
        if low_precision:
            if not self._told_low_precision:
                print_log(f"MergeAdaptersHook: the base weights of {len(low_precision)} adapted layers are stored in "
                          f"{low_precision[0]} (frozen_dtype), where a merge/unmerge round trip would change them; "
                          "evaluating with the adapters apart.", logger="current", level=logging.WARNING)
                self._told_low_precision = True
            return
        merge_adapters(runner.model, safe_merge=self.safe_merge)

    def _unmerge(self, runner) -> None:
        if any(self._layers_merged(runner)):
            unmerge_adapters(runner.model)

    def before_val_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._merge(runner)

    def before_test_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._merge(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._unmerge(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._unmerge(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._unmerge(runner)  # a no-op unless an evaluation ended without its after_*_epoch
