"""soma/analysis/memory_plan.py and tools/analysis/memory_plan.py: the planned peak against measured ones.

The measured peak is that of real CPU training steps of the same config (every storage an op creates, followed
until freed); the planner never allocates the backbone. At these tiny sizes the planner was measured within
±6 % (fp32 and bf16 autocast, with and without with_cp); the tests allow 15 %, the goal of issue #30.
"""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config

from soma.analysis.memory_plan import (LiveTensorMemory, fit_head_model, format_plans, measure_peak, plan_memory)
from soma.utils.errors import ConfigError

from ..conftest import TINY_MODEL


def tiny_config() -> Config:
    cfg = Config.fromfile(str(TINY_MODEL))
    cfg.model.backbone.update(type="DINOv3", arch="tiny_swiglu")  # the 7B's block at 64 dims
    return cfg


def test_live_tensor_memory_counts_each_storage_once_and_frees():
    tracker = LiveTensorMemory()
    with tracker:
        a = torch.ones(1000)  # 4000 bytes
        view = a[:10]  # a view: no new storage
        b = a * 2
        del b
        c = torch.ones(250)
    assert tracker.peak == 8000 and tracker.live == 5000 and view.numel() == 10 and c.numel() == 250


def test_head_model_fit_is_exact_on_its_probes():
    a, b, c = fit_head_model([(1, 128, 10 + 3 * 128**2 + 5), (1, 192, 10 + 3 * 192**2 + 5),
                              (2, 128, 10 + 6 * 128**2 + 10)])
    assert (round(a), round(b), round(c)) == (10, 3, 5)


@pytest.mark.parametrize("with_cp", [False, True], ids=["no-cp", "with-cp"])
def test_plan_is_within_15_percent_of_the_measured_peak(with_cp):
    cfg = tiny_config()
    plan = plan_memory(cfg, batch=2, img_size=128, with_cp=with_cp, amp=False, name="tiny")
    measured = measure_peak(cfg, batch=2, img_size=128, with_cp=with_cp)
    assert plan.with_cp == with_cp and plan.trainable > 0
    assert abs(plan.peak - measured.step_peak) / measured.step_peak < 0.15, (plan.peak, measured.step_peak)
    assert plan.weights == measured.weights  # counted on the meta device = the real model's bytes
    # Checkpointing keeps fewer backbone activations.
    if with_cp:
        assert plan.backbone.saved < plan_memory(cfg, 2, 128, with_cp=False, amp=False).backbone.saved


def test_7b_backbone_activations_on_fake_tensors():
    """The full-size 7B backbone's forward and backward on fake tensors (seconds, no memory), batch 1 at 256²."""
    from soma.analysis.memory_plan import backbone_activations
    from soma.models.backbones import DINOv3

    tokens, dim, trained = 256 + 5, 4096, 27
    block_input = tokens * dim * 4  # float32 residual stream
    with torch.device("meta"):
        checkpointed = DINOv3(arch="7b", with_cp=True, peft=dict(type="SoMA", r=16))
        plain = DINOv3(arch="7b", with_cp=False, peft=dict(type="SoMA", r=16))
    with_cp = backbone_activations(checkpointed, batch=1, img_size=256, amp=True)
    # Checkpointing keeps each trained block's input (plus the output maps): between 1x and 3x the inputs.
    assert trained * block_input <= with_cp.saved < 3 * trained * block_input
    # Without it, autocast's bfloat16 copies of the float32 frozen weights are saved for backward in every trained
    # block (q/k/v/proj 4·d², SwiGLU 3·d·8192) and dominate.
    copies = trained * (4 * dim * dim + 3 * dim * 8192) * 2
    assert copies < backbone_activations(plain, batch=1, img_size=256, amp=True).saved < copies * 1.3


def test_unknown_optimizer_is_refused():
    cfg = tiny_config()
    cfg.optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Lion", lr=1e-4))
    with pytest.raises(ConfigError, match="AdamW, Adam and SGD, not .*'Lion'"):
        plan_memory(cfg, batch=1, img_size=64)


def test_table_names_the_gpus():
    cfg = tiny_config()
    table = format_plans([plan_memory(cfg, batch=1, img_size=64, amp=False, name="tiny")])
    assert "| tiny | 1×64² | no |" in table and "24, 40, 48, 80, 141" in table


def test_plan_follows_the_crop_of_the_data_preprocessor():
    """A crop given to the planner resizes the preprocessor's padding too (else a 256 plan pads to 512)."""
    from soma.analysis.memory_plan import crop_size, set_crop_size

    cfg = Config.fromfile(str(TINY_MODEL))
    cfg.model.data_preprocessor.size = (512, 512)
    assert crop_size(cfg) == 512
    set_crop_size(cfg, 256)
    assert crop_size(cfg) == 256 and cfg.model.backbone.img_size == 256


@pytest.mark.parametrize("argv, message", [
    (["nope.py"], "error: config file 'nope.py' does not exist."),
    (["configs/demo/mask2former_dinov2-tiny_soma.py", "--cfg-options", "model.backbone.arch=huge"],
     "error: `arch` must be one of"),
])
def test_the_tool_refuses_a_missing_config_and_bad_options_in_one_line(argv, message):
    from tools.analysis.memory_plan import main
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert str(stopped.value.code).startswith(message)


@pytest.mark.parametrize("hook, frozen_dtype", [
    (dict(type="FrozenAwareEMAHook"), None), (dict(type="FrozenAwareEMAHook"), "bfloat16"),
    (dict(type="EMAHook"), "bfloat16"), (dict(type="FrozenAwareEMAHook", update_buffers=True), None),
])
def test_the_planned_ema_bytes_are_those_the_hook_keeps(hook, frozen_dtype):
    """FrozenAwareEMAHook keeps the trained parameters; mmengine's EMAHook a copy of the model as built (before
    frozen_dtype casts the base: float32). Planned: the config's hook built on the meta model; kept: the average
    built on the real model, its tensors that are not the model's counted here."""
    from mmengine.registry import DefaultScope

    from soma.analysis.memory_plan import _registry, build_ema, build_on_meta, ema_bytes

    cfg = tiny_config()
    cfg.model.backbone.update(frozen_dtype=frozen_dtype, init_cfg=None)
    cfg.custom_hooks = [dict(hook, momentum=2e-4, begin_iter=0)]
    on_meta = build_on_meta(cfg)
    planned_average = build_ema(cfg, on_meta)
    on_meta.backbone.cast_frozen_base()
    planned = ema_bytes(on_meta, planned_average)
    with DefaultScope.overwrite_default_scope("mmseg"):
        model = _registry(cfg).build(cfg.model)
    as_built = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    averaged = build_ema(cfg, model)  # the hook builds it before the weights are loaded and cast
    model.backbone.cast_frozen_base()
    own = {id(t) for t in [*model.parameters(), *model.buffers()]}
    kept = sum(t.numel() * t.element_size() for t in [*averaged.module.parameters(), *averaged.module.buffers()]
               if id(t) not in own)
    assert planned == kept
    trained = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    assert kept == (as_built if hook["type"] == "EMAHook" else trained + (
        sum(b.numel() * b.element_size() for b in model.buffers()) if hook.get("update_buffers") else 0))
