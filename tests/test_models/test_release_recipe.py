"""The segmentation benchmark configs carry the released recipe (github ysj9909/SoMA @ 7ea8c0e).

docs/reproduction.md lists every field with the released file:line; these tests pin the values that differ between
benchmarks or that the project once had otherwise: clipping, EMA, warm-ups, the two-stage GSU + Cityscapes 1/16 run,
resize and test resolutions, seed, checkpoint selection and the baselines.
"""
from __future__ import annotations

import fnmatch
import inspect
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ..conftest import REPO

CONFIGS = REPO / "configs/soma"
# Every segmentation config under configs/soma (DWD detection has its own recipe).
SEGMENTATION = sorted(p.name for p in CONFIGS.glob("*.py") if "dwd" not in p.name)
# EMA start per config as released; None: no EMA. Backbone swaps, LoRA, PiSSA, DoRA and HF LoRA inherit their DINOv2
# config's.
EMA_BEGIN = {
    "soma_dinov2-l_gta2cbm-512.py": 12000, "soma_dinov2-l_gs2cbm-512.py": None,
    "soma_dinov2-l_gsu2cbm-512.py": None, "soma_dinov2-l_gsu2cbm-1024.py": 16000,
    "soma_dinov2-l_gsuc16-2cbm-1024.py": None, "soma_dinov2-l_citys2bm-512.py": 20000,
    "soma_dinov2-l_citys2acdc-512.py": 20000, "soma_dinov2-l_citys2acdc-1024.py": 20000,
    "frozen_dinov2-l_gta2cbm-512.py": None, "full_dinov2-l_gta2cbm-512.py": None,
    "lora_dinov2-l_gta2cbm-512.py": 12000, "pissa_dinov2-l_gta2cbm-512.py": 12000,
    "soma_eva02-l_gta2cbm-512.py": 12000, "soma_dinov3-l_gta2cbm-512.py": 12000,
    "soma_dinov3-l_citys2acdc-512.py": 20000, "soma-released-init_dinov2-l_gta2cbm-512.py": 12000,
    "dora_dinov2-l_gta2cbm-512.py": 12000, "hf-lora_dinov2-l_gta2cbm-512.py": 12000,
    # not in the release: the large backbones keep the GTA5 recipe of the config they build on
    "soma_dinov2-g_gta2cbm-512.py": 12000, "soma_dinov3-hplus_gta2cbm-512.py": 12000,
    "soma_dinov3-7b_gta2cbm-512.py": 12000,
}
POLY = dict(type="PolyLR", eta_min=0, power=0.9, by_epoch=False)
WEIGHT_DECAY = dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min=1e-5, by_epoch=False)


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIGS / name))


def schedulers(cfg: Config) -> list[dict]:
    """The param schedulers as plain dicts with (begin, end) kept."""
    return [dict(s) for s in cfg.param_scheduler]


def test_every_segmentation_config_is_covered():
    assert sorted(EMA_BEGIN) == SEGMENTATION


@pytest.mark.parametrize("name", SEGMENTATION)
def test_no_clipping_fixed_seed_and_release_selection(name):
    cfg = load(name)
    assert "clip_grad" not in cfg.optim_wrapper  # neither the release nor Rein clip
    assert cfg.randomness == dict(seed=42)
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.save_best == "mean/mIoU" and checkpoint.rule == "greater"
    assert cfg.val_evaluator.type == "DomainIoUMetric"
    header = "\n".join(line for line in (CONFIGS / name).read_text().splitlines() if line.startswith("#"))
    assert "save_best=" in header  # the one-line switch to the source-only protocol


@pytest.mark.parametrize("name", SEGMENTATION)
def test_ema_as_released(name):
    ema = [h for h in load(name).custom_hooks if "EMAHook" in h.type]
    if EMA_BEGIN[name] is None:
        assert not ema
        return
    (hook,) = ema
    assert hook.begin_iter == EMA_BEGIN[name]
    # The released configs name no option: mmengine's defaults, written out here. FrozenAwareEMAHook is mmengine's
    # EMAHook with the frozen base shared (the same weights: tests/test_engine/test_ema.py).
    assert hook.type == "FrozenAwareEMAHook" and "ema_type" not in hook
    assert hook.momentum == 2e-4 and hook.update_buffers is False
    from mmengine.model import ExponentialMovingAverage

    from soma.engine import FrozenAwareEMAHook, TrainableExponentialMovingAverage

    assert inspect.signature(FrozenAwareEMAHook.__init__).parameters["ema_type"].default == \
        TrainableExponentialMovingAverage.__name__
    for averaged in (ExponentialMovingAverage, TrainableExponentialMovingAverage):
        defaults = inspect.signature(averaged.__init__).parameters
        assert defaults["momentum"].default == hook.momentum and defaults["update_buffers"].default is False


@pytest.mark.parametrize("name, warmup", [
    ("soma_dinov2-l_gta2cbm-512.py", None), ("soma_dinov2-l_gs2cbm-512.py", None),
    ("soma_dinov2-l_gsu2cbm-512.py", None), ("soma_dinov2-l_gsu2cbm-1024.py", None),
    ("soma_dinov2-l_citys2bm-512.py", (1e-2, 1500)), ("soma_dinov2-l_citys2acdc-512.py", (1e-6, 10000)),
    ("soma_dinov2-l_citys2acdc-1024.py", (1e-6, 10000)),
])
def test_lr_warmup_and_weight_decay_schedule(name, warmup):
    cfg = load(name)
    expected = [dict(POLY, begin=0, end=40000), dict(WEIGHT_DECAY, begin=0, end=40000)]
    if warmup is not None:
        start, length = warmup
        expected = [dict(type="LinearLR", start_factor=start, begin=0, end=length, by_epoch=False),
                    dict(POLY, begin=length, end=40000), dict(WEIGHT_DECAY, begin=0, end=40000)]
    assert schedulers(cfg) == expected
    assert cfg.train_cfg.max_iters == 40000 and cfg.train_cfg.val_interval == 4000
    assert cfg.default_hooks.checkpoint.interval == 4000
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == (8 if "acdc" in name else 6)


def lr_curve(cfg: Config, iters: list[int]) -> dict[int, float]:
    """The learning rate the config's schedulers give at each of ``iters`` (one parameter, base lr 1e-4)."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    param = torch.nn.Parameter(torch.zeros(1))
    wrapper = OptimWrapper(torch.optim.AdamW([param], lr=1e-4, weight_decay=0.05))
    built = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper)) for s in cfg.param_scheduler]
    seen = {}
    for step in range(max(iters) + 1):
        if step in iters:
            seen[step] = wrapper.optimizer.param_groups[0]["lr"]
        for scheduler in built:
            scheduler.step()
    return seen


def test_acdc_warmup_curve():
    lrs = lr_curve(load("soma_dinov2-l_citys2acdc-1024.py"), [0, 5000, 10000, 25000])
    assert lrs[0] == pytest.approx(1e-10)
    assert lrs[5000] == pytest.approx(0.5e-4, rel=1e-3)  # linear from 1e-6 x lr
    assert lrs[10000] == pytest.approx(1e-4)
    assert lrs[25000] == pytest.approx(1e-4 * 0.5 ** 0.9, rel=1e-4)  # Poly over 10k-40k, halfway


def test_citys2bm_warmup_curve():
    lrs = lr_curve(load("soma_dinov2-l_citys2bm-512.py"), [0, 1500, 20750])
    assert lrs[0] == pytest.approx(1e-6) and lrs[1500] == pytest.approx(1e-4)
    assert lrs[20750] == pytest.approx(1e-4 * 0.5 ** 0.9, rel=1e-4)  # Poly over 1.5k-40k, halfway


def test_gsuc16_is_a_second_stage_on_cityscapes_1of16():
    cfg = load("soma_dinov2-l_gsuc16-2cbm-1024.py")
    stage1 = "soma_dinov2-l_gsu2cbm-1024"
    # load_from: the best checkpoint that stage 1 (release protocol) leaves in its default work dir
    assert Path(cfg.load_from).parent == Path("work_dirs") / stage1
    best = "best_" + load(f"{stage1}.py").default_hooks.checkpoint.save_best.replace("/", "_") + "_iter_36000.pth"
    assert fnmatch.fnmatch(best, Path(cfg.load_from).name)
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == "DGCityscapesDataset" and dataset.subset_ratio == 1 / 16 and dataset.subset_seed == 0
    assert dataset.data_prefix.img_path == "leftImg8bit/train"
    assert cfg.optim_wrapper.optimizer.lr == 1e-5 and cfg.train_dataloader.batch_size == 8
    assert cfg.train_cfg.max_iters == 4000 and cfg.train_cfg.val_interval == 400
    checkpoint = cfg.default_hooks.checkpoint
    assert (checkpoint.interval, checkpoint.max_keep_ckpts) == (400, 7)
    assert schedulers(cfg) == [dict(POLY, begin=0, end=4000), dict(WEIGHT_DECAY, begin=0, end=4000)]
    assert not [h for h in cfg.custom_hooks if "EMAHook" in h.type]
    assert cfg.model.backbone.img_size == 1024 and tuple(cfg.model.test_cfg.crop_size) == (1024, 1024)


def resize_step(dataset: dict) -> dict:
    return next(dict(step) for step in dataset.pipeline if "Resize" in step["type"])


def test_1024_sources_use_the_continuous_resize():
    continuous = dict(type="RandomResize", scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True)
    sources = load("soma_dinov2-l_gsu2cbm-1024.py").train_dataloader.dataset.datasets
    assert [d.type for d in sources] == ["DGGTA5Dataset", "DGSynthiaDataset", "DGUrbanSynDataset"]
    stage2 = load("soma_dinov2-l_gsuc16-2cbm-1024.py").train_dataloader.dataset
    for dataset in [*sources, stage2]:
        assert resize_step(dataset) == continuous
        assert next(s for s in dataset.pipeline if s.type == "RandomCrop").crop_size == (1024, 1024)


@pytest.mark.parametrize("name, crop", [("soma_dinov2-l_citys2acdc-512.py", 512),
                                        ("soma_dinov2-l_citys2acdc-1024.py", 1024)])
def test_acdc_training_scales(name, crop):
    cfg = load(name)
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == "DGCityscapesDataset" and cfg.train_dataloader.batch_size == 8
    resize = resize_step(dataset)
    assert resize == dict(type="RandomChoiceResize", scales=[int(1024 * x * 0.1) for x in range(5, 21)],
                          resize_type="ResizeShortestEdge", max_size=4096)
    assert resize["scales"][0] == 512 and resize["scales"][-1] == 2048
    assert next(s for s in dataset.pipeline if s.type == "RandomCrop").crop_size == (crop, crop)
    assert tuple(cfg.model.data_preprocessor.size) == (crop, crop)
    assert tuple(cfg.model.test_cfg.crop_size) == (crop, crop)


@pytest.mark.parametrize("name", SEGMENTATION)
def test_validation_holds_the_targets_and_the_source_split_the_switch_names(name):
    """The release protocol's key averages the targets only; the source-only key is there where the header names it."""
    cfg = load(name)
    text = (CONFIGS / name).read_text()
    val = [d.get("domain") or d.type for d in cfg.val_dataloader.dataset.datasets]
    test = [d.get("domain") or d.type for d in cfg.test_dataloader.dataset.datasets]
    if "citys2" in name:  # Cityscapes is the source: its val split is scored for the source-only protocol
        assert val == [*test, "DGCityscapesDataset"] and "DGCityscapesDataset" not in test
        assert "citys" not in cfg.val_evaluator.mean_over and len(cfg.val_evaluator.mean_over) == len(test)
        assert "save_best=citys/mIoU" in text
    else:
        assert val == test and cfg.val_evaluator.get("mean_over") is None  # mean over C, B, M
        assert "save_best=None" in text


def test_baselines_as_released():
    frozen, full = load("frozen_dinov2-l_gta2cbm-512.py"), load("full_dinov2-l_gta2cbm-512.py")
    for cfg in (frozen, full):
        assert schedulers(cfg) == [dict(POLY, begin=0, end=40000)]  # no weight-decay annealing
        assert cfg.model.backbone.peft is None
    assert frozen.model.backbone.frozen is True
    assert (frozen.train_cfg.val_interval, frozen.default_hooks.checkpoint.interval,
            frozen.default_hooks.checkpoint.max_keep_ckpts) == (10000, 10000, 4)
    assert full.model.backbone.frozen is False and full.model.backbone.freeze_norms_and_embeddings is True
    assert full.optim_wrapper.paramwise_cfg.custom_keys["backbone"] == dict(lr_mult=0.01)


def test_full_finetuning_optimizer_groups(tiny_segmentor_config):
    """Backbone weights at lr x0.01, frozen norms/embeddings out of the optimizer, head at the base lr."""
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS

    from soma.config.run import resolve_amp

    cfg = load("full_dinov2-l_gta2cbm-512.py")
    model_cfg = tiny_segmentor_config()
    model_cfg.backbone.update(peft=None, frozen=False, freeze_norms_and_embeddings=True, init_cfg=None)
    model = MODELS.build(model_cfg)
    wrapper = build_optim_wrapper(model, resolve_amp(cfg.optim_wrapper, device="cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(p)]: g for g in wrapper.optimizer.param_groups for p in g["params"]}
    backbone = [n for n in groups if n.startswith("backbone.")]
    assert backbone and all(groups[n]["lr"] == pytest.approx(1e-6) for n in backbone)
    assert "backbone.vit.blocks.0.attn.qkv.weight" in groups and "backbone.vit.pos_embed" not in groups
    assert not any(".norm" in n or ".ls1." in n for n in backbone)
    assert groups["decode_head.cls_embed.weight"]["lr"] == 1e-4
