"""The published model config builds at full size, and the training recipe's optimiser groups are right."""
import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

from soma.peft import trainable_parameters
from soma.config.run import resolve_amp

from ..conftest import MODEL_BASE, REPO

SCHEDULE = REPO / "configs/_base_/schedules/soma_40k.py"


def test_published_model_builds_at_full_size():
    cfg = Config.fromfile(str(MODEL_BASE))
    cfg.model.backbone.init_cfg = None  # no weights here; the structure is what is checked
    model = MODELS.build(cfg.model)
    head = model.decode_head
    assert model.backbone.arch == "large" and model.backbone.embed_dim == 1024
    assert head.num_queries == 100 and head.num_classes == 19
    assert len(head.transformer_decoder.layers) == 9 and len(head.pixel_decoder.encoder.layers) == 6
    summary = trainable_parameters(model.backbone)
    assert summary.trainable == 4_866_048


def test_optimizer_groups_follow_the_recipe(tiny_segmentor_config):
    model = MODELS.build(tiny_segmentor_config())
    model.init_weights()
    schedule = Config.fromfile(str(SCHEDULE))
    wrapper = build_optim_wrapper(model, resolve_amp(schedule.optim_wrapper, device="cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(p)]: g for g in wrapper.optimizer.param_groups for p in g["params"]}
    assert all(not n.startswith("backbone.") or not model.get_parameter(n).requires_grad or n in groups
               for n in names.values())
    adapter = next(n for n in groups if n.endswith("lora_A"))
    assert groups[adapter]["lr"] == 0.5e-4 and groups[adapter]["weight_decay"] == 0.05
    assert groups["decode_head.query_embed.weight"]["weight_decay"] == 0.0
    assert groups["decode_head.level_embed.weight"]["weight_decay"] == 0.0
    norm = next(n for n in groups if "norm" in n and n.startswith("decode_head") and n.endswith("weight"))
    assert groups[norm]["weight_decay"] == 0.0
    assert groups["decode_head.cls_embed.weight"]["lr"] == 1e-4


@pytest.mark.slow  # steps mmengine's schedulers through all 40k iterations
def test_weight_decay_is_cosine_annealed(tiny_segmentor_config):
    from mmengine.registry import PARAM_SCHEDULERS

    model = MODELS.build(tiny_segmentor_config())
    schedule = Config.fromfile(str(SCHEDULE))
    wrapper = build_optim_wrapper(model, resolve_amp(schedule.optim_wrapper, device="cpu"))
    wd_cfg = next(s for s in schedule.param_scheduler if s.get("param_name") == "weight_decay")
    scheduler = PARAM_SCHEDULERS.build(dict(wd_cfg, optimizer=wrapper))
    decayed = next(g for g in wrapper.optimizer.param_groups if g["weight_decay"] > 0)
    undecayed = next(g for g in wrapper.optimizer.param_groups if g["weight_decay"] == 0)
    seen = {0: decayed["weight_decay"]}
    for step in range(1, schedule.max_iters + 1):
        scheduler.step()
        if step in (schedule.max_iters // 2, schedule.max_iters):
            seen[step] = decayed["weight_decay"]
    assert seen[0] == 0.05
    assert abs(seen[schedule.max_iters // 2] - (0.05 + 1e-5) / 2) < 1e-6
    assert abs(seen[schedule.max_iters] - 1e-5) < 1e-9
    # as released (absolute eta_min): groups that start without decay end at 1e-5 too
    assert abs(undecayed["weight_decay"] - 1e-5) < 1e-12


def test_frozen_parameters_are_summarised_not_warned_one_by_one(tiny_segmentor_config, capsys):
    from mmengine.logging import MMLogger

    model = MODELS.build(tiny_segmentor_config())
    schedule = resolve_amp(Config.fromfile(str(SCHEDULE)).optim_wrapper, device="cpu")
    assert schedule.constructor == "FrozenAwareOptimWrapperConstructor"
    MMLogger.get_instance("frozen_summary", log_level="INFO")
    ours = build_optim_wrapper(model, schedule)
    log = capsys.readouterr().out + capsys.readouterr().err
    assert "is skipped since its requires_grad=False" not in log
    frozen = sum(1 for p in model.parameters() if not p.requires_grad)
    assert f"optimizer: {frozen} frozen parameter tensors" in log
    default = build_optim_wrapper(model, dict(schedule, constructor="DefaultOptimWrapperConstructor"))
    groups = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in ours.optimizer.param_groups]
    assert groups == [(len(g["params"]), g["lr"], g["weight_decay"]) for g in default.optimizer.param_groups]
