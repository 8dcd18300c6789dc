"""AMP from the schedule: mmengine's AmpOptimWrapper on GPU (bf16 or fp16), the plain wrapper on CPU."""
import argparse
import logging

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmseg.registry import MODELS

from soma.config import run as run_config
from soma.config.run import float32_for_bf16, load_run_config, resolve_amp

from ..conftest import REPO

SCHEDULE = REPO / "configs/_base_/schedules/soma_40k.py"
CONFIG = REPO / "configs/soma/soma_dinov2-l_gta2cbm-512.py"


@pytest.fixture
def fake_gpu(monkeypatch):
    """mmengine's AMP wrapper believes in a GPU (bf16 or not, per test); patched mmcv/mmdet ops are restored."""
    import mmdet.models.losses.focal_loss as focal_loss
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    monkeypatch.setattr(MultiScaleDeformableAttnFunction, "apply", MultiScaleDeformableAttnFunction.apply)
    monkeypatch.setattr(focal_loss, "_sigmoid_focal_loss", focal_loss._sigmoid_focal_loss)
    monkeypatch.setattr(amp_module, "is_cuda_available", lambda: True)  # mmengine's own GPU assertion

    def with_bf16(supported: bool) -> None:
        monkeypatch.setattr(run_config, "bf16_supported", lambda: supported)

    return with_bf16


def test_schedule_asks_for_amp_with_automatic_dtype():
    wrapper = Config.fromfile(str(SCHEDULE)).optim_wrapper
    assert wrapper.type == "AmpOptimWrapper" and wrapper.dtype == "auto" and wrapper.loss_scale == "dynamic"


@pytest.mark.parametrize("bf16, dtype", [(True, torch.bfloat16), (False, torch.float16)])
def test_amp_wrapper_builds_on_gpu_with_the_supported_dtype(bf16, dtype, fake_gpu, tiny_segmentor_config):
    fake_gpu(bf16)
    model = MODELS.build(tiny_segmentor_config())
    resolved = resolve_amp(Config.fromfile(str(SCHEDULE)).optim_wrapper, device="cuda")
    assert resolved.dtype == str(dtype).removeprefix("torch.") and resolved.loss_scale == "dynamic"
    resolved.pop("constructor")  # mmengine's: the schedule's would resolve again, for this GPU-less machine
    wrapper = build_optim_wrapper(model, resolved)
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype == dtype
    assert not wrapper.clip_grad_kwargs  # no gradient clipping, as released


def test_bf16_routes_mmcv_ops_without_bf16_kernels_through_float32(fake_gpu):
    import mmdet.models.losses.focal_loss as focal_loss
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    fake_gpu(True)
    resolve_amp(dict(type="AmpOptimWrapper", dtype="auto", optimizer=dict(type="SGD", lr=0.1)), device="cuda")
    patched = (MultiScaleDeformableAttnFunction.apply, focal_loss._sigmoid_focal_loss)
    assert all(getattr(fn, "_float32_for_bf16", False) for fn in patched)
    resolve_amp(dict(type="AmpOptimWrapper", dtype="auto", optimizer=dict(type="SGD", lr=0.1)), device="cuda")
    assert (MultiScaleDeformableAttnFunction.apply, focal_loss._sigmoid_focal_loss) == patched  # idempotent


def test_float32_for_bf16_casts_in_and_back():
    seen = []

    def kernel(value, index, weights, step):  # stands in for a CUDA kernel compiled for float32/float16 only
        seen.append((value.dtype, index.dtype, weights.dtype, torch.is_autocast_enabled("cpu")))
        return value * weights.sum()

    wrapped = float32_for_bf16(kernel)
    value = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = wrapped(value, torch.arange(3), weights=torch.ones(2, dtype=torch.bfloat16), step=64)
    assert seen[-1] == (torch.float32, torch.int64, torch.float32, False)
    assert out.dtype == torch.bfloat16
    out.sum().backward()  # gradients flow through the casts
    assert value.grad is not None and value.grad.dtype == torch.bfloat16
    wrapped(torch.randn(3), torch.arange(3), torch.ones(2), 64)
    assert seen[-1][0] == torch.float32 and seen[-1][3] is False  # float32 calls pass through unchanged
    assert float32_for_bf16(wrapped) is wrapped
    loss = float32_for_bf16(kernel, restore_dtype=False)  # losses stay in float32, as under autocast
    assert loss(value, torch.arange(3), torch.ones(2, dtype=torch.bfloat16), 64).dtype == torch.float32


def test_cpu_falls_back_to_the_plain_wrapper_with_a_warning(monkeypatch, tiny_segmentor_config):
    logged = []
    monkeypatch.setattr(run_config, "print_log",
                        lambda msg, logger=None, level=logging.INFO: logged.append((level, msg)))
    resolved = resolve_amp(Config.fromfile(str(SCHEDULE)).optim_wrapper, device="cpu")
    assert resolved.type == "OptimWrapper" and not {"dtype", "loss_scale"} & set(resolved)
    assert any(level == logging.WARNING and "float32" in msg and "OptimWrapper" in msg for level, msg in logged)
    wrapper = build_optim_wrapper(MODELS.build(tiny_segmentor_config()), resolved)
    assert type(wrapper) is OptimWrapper and not wrapper.clip_grad_kwargs


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_the_schedules_constructor_falls_back_on_cpu(tiny_segmentor_config):
    from soma.engine import FrozenAwareOptimWrapperConstructor

    for amp in (False, True):  # the schedule's AMP, or tools/train.py --amp
        args = argparse.Namespace(config=str(CONFIG), cfg_options=None, launcher="none", local_rank=0,
                                  work_dir=None, amp=amp)
        optim_wrapper = load_run_config(args).optim_wrapper
        assert optim_wrapper.type == "AmpOptimWrapper"  # decided by the constructor the schedule names
        optim_wrapper = optim_wrapper.copy()
        assert optim_wrapper.pop("constructor") == "FrozenAwareOptimWrapperConstructor"
        constructor = FrozenAwareOptimWrapperConstructor(optim_wrapper, optim_wrapper.pop("paramwise_cfg", None))
        wrapper = constructor(MODELS.build(tiny_segmentor_config()))
        assert type(wrapper) is OptimWrapper
    plain = dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1))
    assert resolve_amp(plain) == plain  # configs without AMP are left as they are


def test_bad_amp_options_are_rejected():
    amp = dict(type="AmpOptimWrapper", optimizer=dict(type="SGD", lr=0.1))
    with pytest.raises(ValueError, match="`optim_wrapper.dtype` must be one of"):
        resolve_amp(dict(amp, dtype="float8"))
    with pytest.raises(ValueError, match="`device` must be 'cuda' or 'cpu'"):
        resolve_amp(amp, device="tpu")


def test_float32_dtype_trains_without_amp_on_gpu(fake_gpu, tiny_segmentor_config):
    """`optim_wrapper.dtype=float32` trains a benchmark config in float32, as the released code did."""
    fake_gpu(True)
    schedule = Config.fromfile(str(SCHEDULE)).optim_wrapper
    resolved = resolve_amp(dict(schedule, dtype="float32"), device="cuda")
    assert resolved.type == "OptimWrapper" and not {"dtype", "loss_scale"} & set(resolved)
    assert type(build_optim_wrapper(MODELS.build(tiny_segmentor_config()), resolved)) is OptimWrapper
