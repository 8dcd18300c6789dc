"""TrainableExponentialMovingAverage / FrozenAwareEMAHook: mmengine's EMA weights, without a copy of the frozen base.

Exactness: the averages are compared bit for bit with mmengine's ExponentialMovingAverage over the same updates
(the same ``lerp_`` on the same tensors), and the frozen tensors must be the model's own objects.
"""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage

from soma.engine import FrozenAwareEMAHook, TrainableExponentialMovingAverage
from soma.peft import SoMAConfig, apply_soma


def adapted_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.GELU(), nn.Linear(32, 4))
    apply_soma(model, SoMAConfig(r=2, target_modules=("0", "3")))
    return model


def train_steps(model: nn.Module, averages: list, steps: int) -> None:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 16, generator=generator), torch.randn(8, 4, generator=generator)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        for average in averages:
            average.update_parameters(model)


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("update_buffers", [False, True])
def test_the_average_equals_mmengines_bit_for_bit(update_buffers):
    model = adapted_model()
    stock = ExponentialMovingAverage(model, momentum=0.1, update_buffers=update_buffers)
    ours = TrainableExponentialMovingAverage(model, momentum=0.1, update_buffers=update_buffers)
    train_steps(model, [stock, ours], steps=6)
    stock_state = stock.module.state_dict()
    for name, tensor in ours.module.state_dict().items():
        assert torch.equal(tensor, stock_state[name]), name
    assert set(ours.avg_parameters) == trainable_names(model) | (
        {name for name, _ in model.named_buffers()} if update_buffers else set())
    assert int(ours.steps) == int(stock.steps) == 6


def test_frozen_tensors_are_the_models_own_and_only_trained_ones_are_copied():
    model = adapted_model()
    ours = TrainableExponentialMovingAverage(model)
    source = dict(model.named_parameters())
    for name, tensor in ours.module.named_parameters():
        assert (tensor is source[name]) == (not source[name].requires_grad), name
    source_buffers = dict(model.named_buffers())
    assert all(buffer is source_buffers[name] for name, buffer in ours.module.named_buffers())
    # A frozen tensor replaced after the average was built (loading, casting) is followed at the next update.
    layer = model[0].base_layer
    layer.weight = nn.Parameter(layer.weight.detach().to(torch.float64), requires_grad=False)
    ours.update_parameters(model)
    assert ours.module[0].base_layer.weight is layer.weight


def test_a_changed_trained_set_is_refused():
    model = adapted_model()
    ours = TrainableExponentialMovingAverage(model)
    model[0].base_layer.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="`0.base_layer.weight` was frozen, and it is trained now"):
        ours.update_parameters(model)


def test_state_dict_holds_the_averaged_tensors_and_loads_a_stock_one():
    model = adapted_model()
    ours = TrainableExponentialMovingAverage(model, momentum=0.1)
    stock = ExponentialMovingAverage(model, momentum=0.1)
    train_steps(model, [ours, stock], steps=3)
    state = ours.state_dict()
    assert set(state) == {"steps"} | {f"module.{name}" for name in trainable_names(model)}
    fresh = TrainableExponentialMovingAverage(adapted_model())
    fresh.load_state_dict(stock.state_dict())  # an ema_state_dict saved by mmengine's hook: full model
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    with pytest.raises(RuntimeError, match="lacks 1 averaged tensors"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "module.3.lora_A"})


def test_another_device_is_refused():
    with pytest.raises(ValueError, match="cannot keep the average on another device"):
        TrainableExponentialMovingAverage(adapted_model(), device="cpu")


def test_the_hook_swaps_and_copies_only_the_averaged_tensors():
    model = adapted_model()
    hook = FrozenAwareEMAHook(momentum=0.5, begin_iter=2)
    hook.before_run(SimpleNamespace(model=model))
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    runner = SimpleNamespace(iter=0)
    hook.after_train_iter(runner, 0)  # before begin_iter: the averaged tensors follow the model
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    runner.iter = 1
    hook.after_train_iter(runner, 1)  # first update: a copy
    with torch.no_grad():
        model[0].lora_B.add_(2.0)
    runner.iter = 2
    hook.after_train_iter(runner, 2)  # lerp by 0.5
    raw = model[0].lora_B.detach().clone()
    hook.before_val_epoch(runner)
    torch.testing.assert_close(model[0].lora_B, raw - 1.0, rtol=0, atol=0)
    hook.after_val_epoch(runner)
    assert torch.equal(model[0].lora_B, raw)
    assert all(p is frozen[n] for n, p in model.named_parameters() if not p.requires_grad)
    checkpoint = {"state_dict": model.state_dict()}
    hook.before_save_checkpoint(runner, checkpoint)
    assert set(checkpoint["ema_state_dict"]) == {"steps"} | {f"module.{n}" for n in trainable_names(model)}
    torch.testing.assert_close(checkpoint["state_dict"]["0.lora_B"], raw - 1.0, rtol=0, atol=0)  # EMA deployed
