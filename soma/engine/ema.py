"""An EMA of the weights that averages what is trained and shares the frozen base.

mmengine's ``EMAHook`` with its ``ExponentialMovingAverage`` keeps a deep copy of the whole model, made before
the weights are loaded: with a frozen backbone that copy is the backbone again (ViT-L: 1.2 GB; DINOv3-7B: 27 GB,
as float32, although the base itself is cast to bfloat16 later), the average of a frozen weight is that weight,
and every checkpoint stores the base twice. Here the averaged model holds its own copy of the trainable
parameters only (adapters, trained biases, the head) and refers to the model's own frozen tensors, and the
checkpoint's ``ema_state_dict`` holds the averaged tensors only. The arithmetic is mmengine's (``lerp_`` with
the momentum, from ``begin_iter``), so a run gives the weights the stock hook gives, bit for bit.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn as nn
from mmengine.hooks import EMAHook
from mmengine.logging import print_log
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import HOOKS, MODELS

__all__ = ["FrozenAwareEMAHook", "TrainableExponentialMovingAverage"]


def _source_tensors(model: nn.Module, with_buffers: bool) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    if with_buffers:
        tensors.update(model.named_buffers())
    return tensors


@MODELS.register_module()
class TrainableExponentialMovingAverage(ExponentialMovingAverage):
    """mmengine's ``ExponentialMovingAverage`` over the parameters that require gradients (and the buffers with
    ``update_buffers=True``); frozen parameters (and, without ``update_buffers``, buffers, which mmengine copies
    from the model at every update anyway) are the model's own tensors, not copies.

    Which parameters are averaged is fixed when the average is built (mmengine builds it before training): a
    parameter that is frozen then and trained later, or the reverse, is refused at the next update.

    Args:
        model: the model to average (its trainable parameters are copied).
        momentum: weight of the current model in each update, as in mmengine (``2e-4`` in the SoMA recipes).
        interval: update every ``interval`` calls.
        device: not supported; the shared frozen tensors stay where the model keeps them.
        update_buffers: also average the buffers (then they are copied, as the trainable parameters).
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0002, interval: int = 1,
                 device: torch.device | str | None = None, update_buffers: bool = False) -> None:
        if device is not None:
            raise ValueError("TrainableExponentialMovingAverage shares the frozen weights with the model, so it "
                             f"cannot keep the average on another device ({device!r}); drop `device`, or use "
                             "mmengine's ExponentialMovingAverage, which copies the whole model.")
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"`momentum` must be in (0, 1), got {momentum}.")
        nn.Module.__init__(self)
        shared = [p for p in model.parameters() if not p.requires_grad]
        if not update_buffers:
            shared += list(model.buffers())
        memo: dict[int, Any] = {id(tensor): tensor for tensor in shared}
        self.module = copy.deepcopy(model, memo).requires_grad_(False)
        self.interval = interval
        self.momentum = momentum
        self.update_buffers = update_buffers
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))
        averaged = {name for name, p in model.named_parameters() if p.requires_grad}
        if update_buffers:
            averaged |= {name for name, _ in model.named_buffers()}
        self.avg_parameters = {name: tensor for name, tensor in _source_tensors(self.module, update_buffers).items()
                               if name in averaged}

    def share_frozen(self, model: nn.Module) -> None:
        """Point the average at ``model``'s current frozen tensors (loading or casting may have replaced them
        since the average was built) and refuse a change of the trained set."""
        targets = [("parameter", name, p, p.requires_grad) for name, p in model.named_parameters()]
        if not self.update_buffers:
            targets += [("buffer", name, b, False) for name, b in model.named_buffers()]
        for kind, name, tensor, trained in targets:
            if trained != (name in self.avg_parameters):
                state = "trained" if trained else "frozen"
                raise RuntimeError(f"the EMA was built when `{name}` was {'frozen' if trained else 'trained'}, and "
                                   f"it is {state} now: build the EMA hook after the final freezing.")
            if trained:
                continue
            owner_name, _, leaf = name.rpartition(".")
            owner = self.module.get_submodule(owner_name)
            table = owner._parameters if kind == "parameter" else owner._buffers
            if table.get(leaf) is not tensor:
                table[leaf] = tensor

    def update_parameters(self, model: nn.Module) -> None:
        """mmengine's update (a copy at the first call, then ``lerp_`` every ``interval``) on the averaged
        tensors only."""
        self.share_frozen(model)
        source = _source_tensors(model, self.update_buffers)
        if self.steps == 0:
            for name, averaged in self.avg_parameters.items():
                averaged.data.copy_(source[name].data)
        elif self.steps % self.interval == 0:
            for name, averaged in self.avg_parameters.items():
                if averaged.dtype.is_floating_point:
                    self.avg_func(averaged.data, source[name].data.to(averaged.device), self.steps)
        self.steps += 1

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``steps`` and the averaged tensors (``module.<name>``): the frozen base is the model's own."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        keep = {f"{prefix}steps"} | {f"{prefix}module.{name}" for name in self.avg_parameters}
        for key in [key for key in state if key.startswith(prefix) and key not in keep]:
            del state[key]
        return state

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load ``steps`` and the averaged tensors; other keys (the frozen base in an ``ema_state_dict`` saved by
        mmengine's ``ExponentialMovingAverage``) are the model's own weights and are left out."""
        wanted = {"steps"} | {f"module.{name}" for name in self.avg_parameters}
        missing = sorted(wanted - set(state_dict))
        if strict and missing:
            raise RuntimeError(f"the EMA state lacks {len(missing)} averaged tensors, e.g. {missing[:3]}")
        own = {key: value for key, value in state_dict.items() if key in wanted}
        return super().load_state_dict(own, strict=False, assign=assign)


@HOOKS.register_module()
class FrozenAwareEMAHook(EMAHook):
    """mmengine's ``EMAHook`` (same options, same weights) that touches only the averaged tensors.

    By default it averages with :class:`TrainableExponentialMovingAverage`. Before ``begin_iter`` it copies the
    averaged tensors, not the whole model, at every iteration; for validation and testing it swaps them by name;
    a checkpoint loaded without an ``ema_state_dict`` (``load_from``) fills them without a deep copy of the
    checkpoint. With ``ema_type="ExponentialMovingAverage"`` it behaves as mmengine's hook.

    Args:
        ema_type: an exponential moving average registered in mmengine's ``MODELS`` (one that takes ``momentum``).
        momentum, interval, update_buffers: the average's options (mmengine's defaults).
        strict_load, begin_iter, begin_epoch: mmengine's ``EMAHook`` options.
    """

    def __init__(self, ema_type: str = "TrainableExponentialMovingAverage", momentum: float = 0.0002,
                 interval: int = 1, update_buffers: bool = False, strict_load: bool = False, begin_iter: int = 0,
                 begin_epoch: int = 0) -> None:
        super().__init__(ema_type=ema_type, strict_load=strict_load, begin_iter=begin_iter, begin_epoch=begin_epoch,
                         momentum=momentum, interval=interval, update_buffers=update_buffers)

    def _source(self) -> dict[str, torch.Tensor]:
        return _source_tensors(self.src_model, self.ema_model.update_buffers)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._ema_started(runner):
            self.ema_model.update_parameters(self.src_model)
            return
        source = self._source()
        for name, averaged in self.ema_model.avg_parameters.items():
            averaged.data.copy_(source[name].data)

    def _swap_ema_parameters(self) -> None:
        source = self._source()
        for name, averaged in self.ema_model.avg_parameters.items():
            current = source[name]
            kept = averaged.data.clone()
            averaged.data.copy_(current.data)
            current.data.copy_(kept)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "ema_state_dict" in checkpoint and runner._resume:
            super().after_load_checkpoint(runner, checkpoint)
            return
        if runner._resume:
            print_log("There is no `ema_state_dict` in the checkpoint: the EMA starts from its `state_dict`.",
                      logger="current", level=logging.WARNING)
        state = checkpoint["state_dict"]
        missing = [name for name in self.ema_model.avg_parameters if name not in state]
        if missing and self.strict_load:
            raise RuntimeError(f"the checkpoint lacks {len(missing)} averaged tensors, e.g. {missing[:3]}")
        for name, averaged in self.ema_model.avg_parameters.items():
            if name in state:
                averaged.data.copy_(state[name])
