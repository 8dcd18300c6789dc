"""A bf16 training step of the tiny Mask2Former segmentor: finite loss, gradients close to float32.

The same seed draws the same Mask2Former sampling points in both precisions. Tolerances (bf16 keeps 8
mantissa bits): loss within 5% relative, and the trainable gradients (one vector) within 10% relative L2
distance of float32's, cosine similarity >= 0.99.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
from mmseg.registry import MODELS

from soma.utils.run_config import resolve_amp, run_mmcv_ops_in_float32_under_bf16

from ..conftest import REPO
from ..test_models.test_segmentor import make_batch
from .conftest import DEVICES

SCHEDULE = REPO / "configs/_base_/schedules/soma_40k.py"


def loss_and_grads(model, batch, device, dtype):
    torch.manual_seed(0)
    torch.cuda.manual_seed_all(0)
    model.zero_grad()
    data = model.data_preprocessor(batch, True)
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        losses = model(**data, mode="loss")
    loss, _ = model.parse_losses(losses)
    loss.backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.requires_grad and p.grad is not None])
    return loss.detach().float(), grads


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_step_is_finite_and_close_to_float32(device, tiny_segmentor_config, restore_mmcv_ops):
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_config(num_classes=3)).to(device)
    model.init_weights()
    model.train()
    batch = make_batch(num_images=2, size=64)
    run_mmcv_ops_in_float32_under_bf16()  # as resolve_amp does for bf16
    loss32, grads32 = loss_and_grads(model, batch, device, torch.float32)
    loss16, grads16 = loss_and_grads(model, batch, device, torch.bfloat16)
    assert torch.isfinite(loss16) and torch.isfinite(grads16).all()
    assert abs(loss16 - loss32) <= 0.05 * abs(loss32), (loss16, loss32)
    distance = (grads16 - grads32).norm() / grads32.norm()
    cosine = torch.nn.functional.cosine_similarity(grads16, grads32, dim=0)
    assert distance <= 0.10 and cosine >= 0.99, (distance.item(), cosine.item())


@pytest.mark.parametrize("device", DEVICES[:1])
def test_schedule_amp_wrapper_trains_in_bf16_on_the_gpu(device, tiny_segmentor_config, restore_mmcv_ops):
    model = MODELS.build(tiny_segmentor_config(num_classes=3)).to(device)
    model.init_weights()
    wrapper = build_optim_wrapper(model, resolve_amp(Config.fromfile(str(SCHEDULE)).optim_wrapper, device=device))
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype == torch.bfloat16  # H100/A100: native bf16
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = [model.train_step(make_batch(num_images=2, size=64), wrapper)["loss"].item() for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
