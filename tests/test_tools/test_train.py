"""tools/train.py trains a config for a few iterations and writes a checkpoint that resumes."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import REPO


def make_cityscapes_like(root, num_images=4, size=64):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(num_images):
            image_dir = root / "leftImg8bit" / split / "demo"
            label_dir = root / "gtFine" / split / "demo"
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            label = np.zeros((size, size), np.uint8)
            label[size // 2:] = 1
            image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            image[size // 2:] //= 4
            Image.fromarray(image).save(image_dir / f"demo_{index:06d}_leftImg8bit.png")
            Image.fromarray(label).save(label_dir / f"demo_{index:06d}_gtFine_labelTrainIds.png")


CONFIG = """
_base_ = ["{repo}/configs/_base_/default_runtime.py", "{repo}/configs/demo/mask2former_dinov2-tiny_soma.py",
          "{repo}/configs/_base_/schedules/soma_40k.py"]
dataset = dict(type="CityscapesDataset", data_root="{data}", data_prefix=dict(img_path="leftImg8bit/train",
               seg_map_path="gtFine/train"), pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
               dict(type="PackSegInputs")])
train_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dataset)
val_dataloader = dict(batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(dataset, data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val")))
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_dataloader = val_dataloader
test_evaluator = val_evaluator
train_cfg = dict(max_iters=4, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2), visualization=dict(draw=False))
param_scheduler = [dict(type="PolyLR", power=0.9, begin=0, end=4, by_epoch=False),
                   dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min_ratio=2e-4,
                        begin=0, end=4, by_epoch=False)]
"""


def run_train(config, work_dir, *extra):
    return subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir", str(work_dir),
                           *extra], capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
def test_train_then_resume(tmp_path):
    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    result = run_train(config, tmp_path / "work", "--cfg-options", "train_cfg.max_iters=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "work" / "iter_2.pth").is_file()
    assert "mIoU" in result.stdout + result.stderr  # validation ran through the slide-inference path
    result = run_train(config, tmp_path / "work", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "resumed" in log.lower() and "Iter(train) [4/4]" in log
    assert (tmp_path / "work" / "iter_4.pth").is_file()


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_misspelt_type_fails_before_building(tmp_path):
    config = tmp_path / "typo.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data").replace(
        'type="CityscapesDataset"', 'type="CityscapeDataset"'))
    result = run_train(config, tmp_path / "work")
    assert result.returncode != 0
    assert "Did you mean: 'CityscapesDataset'" in result.stderr


@pytest.mark.slow
def test_dist_train_two_cpu_processes(tmp_path):
    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS="1")
    result = subprocess.run(["bash", str(REPO / "tools/dist_train.sh"), str(config), "2", "--work-dir",
                             str(tmp_path / "work"), "--cfg-options", "train_cfg.max_iters=2"],
                            capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "Distributed training: True" in log and "GPU number: 2" in log, log[-2000:]  # mmengine: processes
    assert (tmp_path / "work" / "iter_2.pth").is_file()


@pytest.mark.slow
def test_test_sh_prints_metrics_and_dist_test_agrees(tmp_path):
    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    assert run_train(config, tmp_path / "work", "--cfg-options", "train_cfg.max_iters=2").returncode == 0
    checkpoint = str(tmp_path / "work" / "iter_2.pth")
    single = subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), checkpoint, "1", "--work-dir",
                             str(tmp_path / "test1"), "--show-dir", str(tmp_path / "show")], capture_output=True,
                            text=True, cwd=REPO, env=dict(os.environ, PYTHON=sys.executable))
    assert single.returncode == 0, single.stderr[-3000:]
    assert "mIoU" in single.stdout and "metric" in single.stdout
    assert len(list((tmp_path / "show").rglob("*.png"))) == 4  # one drawn prediction per test image
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(30500 + os.getpid() % 1000), OMP_NUM_THREADS="1")
    dist = subprocess.run(["bash", str(REPO / "tools/dist_test.sh"), str(config), checkpoint, "2", "--work-dir",
                           str(tmp_path / "test2")], capture_output=True, text=True, cwd=REPO, env=env)
    assert dist.returncode == 0, dist.stderr[-3000:]
    import json

    one = json.loads((tmp_path / "test1" / "metrics.json").read_text())
    two = json.loads((tmp_path / "test2" / "metrics.json").read_text())
    assert abs(one["mIoU"] - two["mIoU"]) < 1e-6  # the 2-process evaluation collects every image once


@pytest.mark.slow
def test_exported_backbone_loads_into_plain_timm(tmp_path):
    import timm
    import torch
    from mmengine.config import Config
    from mmseg.registry import MODELS

    from soma.peft import soma_layers
    from soma.apis.adapters import export_backbone

    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    assert run_train(config, tmp_path / "work", "--cfg-options", "train_cfg.max_iters=2").returncode == 0
    checkpoint = tmp_path / "work" / "iter_2.pth"
    meta = export_backbone(str(config), str(checkpoint), str(tmp_path / "backbone.pth"))
    assert meta["merged_layers"] == 8

    saved = torch.load(tmp_path / "backbone.pth", weights_only=True)
    plain = timm.create_model(meta["timm_model"], pretrained=False, num_classes=0, patch_size=meta["patch_size"],
                              img_size=meta["img_size"], dynamic_img_size=True, embed_dim=64, depth=4, num_heads=2)
    plain.load_state_dict(saved["state_dict"], strict=False)  # the unused final norm was pruned
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
    assert soma_layers(model.backbone.vit)  # the trained model still has its adapters, unmerged
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model.backbone.eval().forward_intermediates(x)
        theirs = plain.eval().forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_extract_then_merge_adapter_reproduces_predictions(tmp_path):
    import timm
    import torch
    from mmengine.config import Config
    from mmseg.registry import MODELS

    from soma.apis.adapters import extract_adapter, merge_adapter
    from soma.peft import soma_layers

    torch.manual_seed(0)
    base = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56,
                             embed_dim=64, depth=4, num_heads=2)
    torch.save(base.state_dict(), tmp_path / "base.pth")
    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data") + (
        f'model = dict(backbone=dict(init_cfg=dict(_delete_=True, type="Pretrained", '
        f'checkpoint="{tmp_path / "base.pth"}")))\n'))
    assert run_train(config, tmp_path / "work", "--cfg-options", "train_cfg.max_iters=2").returncode == 0
    checkpoint = tmp_path / "work" / "iter_2.pth"

    extract_adapter(str(config), str(checkpoint), str(tmp_path / "adapter.pth"))
    assert (tmp_path / "adapter.pth").stat().st_size < checkpoint.stat().st_size / 2
    merge_adapter(str(config), str(tmp_path / "adapter.pth"), str(tmp_path / "merged.pth"))

    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    trained = MODELS.build(cfg.model)
    trained.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
    cfg.model.backbone.peft = None
    merged = MODELS.build(cfg.model)
    merged.load_state_dict(torch.load(tmp_path / "merged.pth", weights_only=True)["state_dict"])
    assert not soma_layers(merged) and soma_layers(trained)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        metas = [dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64))]
        torch.testing.assert_close(merged.eval().encode_decode(x, metas), trained.eval().encode_decode(x, metas),
                                   atol=1e-4, rtol=1e-4)

    other = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56,
                              embed_dim=64, depth=4, num_heads=2)  # another random base
    torch.save(other.state_dict(), tmp_path / "base.pth")
    with pytest.raises(ValueError, match="different base weights"):
        merge_adapter(str(config), str(tmp_path / "adapter.pth"), str(tmp_path / "never.pth"))


@pytest.mark.slow
def test_ema_keeps_an_averaged_copy(tmp_path):
    """The G->CBM config's EMA hook (from iteration 1 here) trains and saves the averaged weights with the
    checkpoint."""
    import torch
    from mmengine.config import Config

    make_cityscapes_like(tmp_path / "data")
    ema_hooks = Config.fromfile(str(REPO / "configs/soma/soma_dinov2-l_gta2cbm-512.py")).custom_hooks
    next(hook for hook in ema_hooks if hook.type == "FrozenAwareEMAHook").begin_iter = 1
    config = tmp_path / "tiny_ema.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data") + f"custom_hooks = {ema_hooks!r}\n")
    result = run_train(config, tmp_path / "work", "--cfg-options", "train_cfg.max_iters=2")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "work" / "iter_2.pth", map_location="cpu", weights_only=False)
    ema = checkpoint["ema_state_dict"]
    adapter = next(k for k in checkpoint["state_dict"] if k.endswith("lora_B"))
    assert not torch.equal(ema[f"module.{adapter}"], checkpoint["state_dict"][adapter])  # averaged, not a copy
    # FrozenAwareEMAHook: the EMA state holds what is trained (adapters, trained biases, the head), not the base.
    assert not [key for key in ema if "base_layer.weight" in key or "patch_embed" in key]
    assert {key.removeprefix("module.") for key in ema} - {"steps"} < set(checkpoint["state_dict"])

    # Resumed from iteration 2, the EMA continues from its saved state: 2 + 1 iterations end where 3 do. (No
    # validation: its dataloader draws from the random stream after the checkpoint is written.)
    for work, iters, extra in (("straight", 3, ()), ("resumed", 2, ()), ("resumed", 3, ("--resume",))):
        result = run_train(config, tmp_path / work, *extra, "--cfg-options", f"train_cfg.max_iters={iters}",
                           "train_cfg.val_interval=100")
        assert result.returncode == 0, result.stderr[-3000:]
    a, b = (torch.load(tmp_path / run / "iter_3.pth", map_location="cpu", weights_only=False)
            for run in ("straight", "resumed"))
    for part in ("state_dict", "ema_state_dict"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


DOMAIN_CONFIG = """
_base_ = ["{repo}/configs/_base_/default_runtime.py", "{repo}/configs/demo/mask2former_dinov2-tiny_soma.py",
          "{repo}/configs/_base_/schedules/soma_40k.py"]
meta_keys = ("img_path", "seg_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
             "flip_direction", "reduce_zero_label", "domain")
dataset = dict(type="DGCityscapesDataset", data_root="{data}", data_prefix=dict(img_path="leftImg8bit/train",
               seg_map_path="gtFine/train"), pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
               dict(type="PackSegInputs", meta_keys=meta_keys)])
train_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dataset)
val_dataloader = dict(batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(dataset, data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val")))
val_evaluator = dict(type="DomainIoUMetric")
test_dataloader = val_dataloader
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [dict(type="PolyLR", power=0.9, begin=0, end=2, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1), checkpoint={checkpoint!r}, visualization=dict(draw=False))
custom_hooks = {hooks!r}
"""


@pytest.mark.slow
def test_release_protocol_keeps_the_best_and_the_second_stage_starts_from_it(tmp_path):
    """Stage 1 as the GSU-1024 config (EMA, save_best on mean/mIoU); stage 2 loads the best through its pattern."""
    import torch
    from mmengine.config import Config

    make_cityscapes_like(tmp_path / "data")
    stage1_cfg = Config.fromfile(str(REPO / "configs/soma/soma_dinov2-l_gsu2cbm-1024.py"))
    stage2_cfg = Config.fromfile(str(REPO / "configs/soma/soma_dinov2-l_gsuc16-2cbm-1024.py"))
    hooks = [dict(h) for h in stage1_cfg.custom_hooks]
    next(h for h in hooks if h["type"] == "FrozenAwareEMAHook")["begin_iter"] = 1
    stage1 = tmp_path / "stage1.py"
    stage1.write_text(DOMAIN_CONFIG.format(repo=REPO, data=tmp_path / "data", hooks=hooks,
                                           checkpoint=dict(stage1_cfg.default_hooks.checkpoint, interval=2)))
    result = run_train(stage1, tmp_path / "stage1")
    assert result.returncode == 0, result.stderr[-3000:]
    (best,) = (tmp_path / "stage1").glob("best_*.pth")
    assert best.name == "best_mean_mIoU_iter_2.pth"
    pattern = str(tmp_path / "stage1" / Path(stage2_cfg.load_from).name)

    # Stage 2 at lr 0: its weights stay those of stage 1's best (the averaged ones, as EMA saved them).
    stage2 = tmp_path / "stage2.py"
    stage2.write_text(DOMAIN_CONFIG.format(repo=REPO, data=tmp_path / "data",
                                           hooks=[dict(h) for h in stage2_cfg.custom_hooks],
                                           checkpoint=dict(stage2_cfg.default_hooks.checkpoint, interval=2))
                      + f"load_from = {pattern!r}\noptim_wrapper = dict(optimizer=dict(lr=0.0))\n")
    result = run_train(stage2, tmp_path / "stage2", "--resume")  # nothing to resume yet: a fresh start from stage 1
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"load_from: {best}" in result.stdout + result.stderr
    start = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    after = torch.load(tmp_path / "stage2" / "iter_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    adapter = next(k for k in start if k.endswith("lora_B"))
    torch.testing.assert_close(after[adapter], start[adapter], atol=1e-6, rtol=0)

    result = run_train(stage2, tmp_path / "stage2", "--resume", "--cfg-options", "train_cfg.max_iters=4")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "resumed" in log.lower() and "Iter(train) [4/4]" in log  # stage 2's own run, not stage 1's 40k

    (tmp_path / "stage1" / "best_mean_mIoU_iter_4.pth").write_bytes(best.read_bytes())
    result = run_train(stage2, tmp_path / "stage2b")
    assert result.returncode != 0 and "matches 2 files" in result.stderr


def test_load_from_pattern_resolves_to_its_one_match(tmp_path):
    from soma.utils import ConfigError
    from soma.apis.training import resolve_load_from

    assert resolve_load_from("work_dirs/x/iter_40000.pth") == "work_dirs/x/iter_40000.pth"  # not a pattern
    pattern = str(tmp_path / "best_mean_mIoU_iter_*.pth")
    with pytest.raises(ConfigError, match="matches no file.*train that run first"):
        resolve_load_from(pattern)
    (tmp_path / "best_mean_mIoU_iter_8000.pth").touch()
    assert resolve_load_from(pattern) == str(tmp_path / "best_mean_mIoU_iter_8000.pth")
    (tmp_path / "best_mean_mIoU_iter_12000.pth").touch()
    with pytest.raises(ConfigError, match="matches 2 files"):
        resolve_load_from(pattern)


def test_seed_option_sets_the_config_seed(tmp_path):
    from soma.apis.training import parse_args
    from soma.config import load_run_config

    config = str(REPO / "configs/demo/soma_dinov2-demo_scenes-64.py")
    assert load_run_config(parse_args([config, "--work-dir", str(tmp_path)])).randomness.seed == 0  # the config's
    cfg = load_run_config(parse_args([config, "--seed", "7", "--work-dir", str(tmp_path)]))
    assert cfg.randomness == dict(seed=7)


@pytest.mark.slow  # trains and tests through the tools' command lines
def test_seed_reaches_the_checkpoint_and_the_test_metrics(tmp_path):
    import json

    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    result = run_train(config, tmp_path / "work", "--seed", "3", "--cfg-options", "train_cfg.max_iters=2")
    assert result.returncode == 0, result.stderr[-3000:]
    test = subprocess.run([sys.executable, str(REPO / "tools/test.py"), str(config), str(tmp_path / "work/iter_2.pth"),
                           "--work-dir", str(tmp_path / "test")], capture_output=True, text=True, cwd=REPO)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / "test/metrics.json").read_text())
    # The config's own seed is 42 (default_runtime.py): the one recorded is the training run's, from the checkpoint.
    assert metrics["seed"] == 3 and metrics["config"] == str(config)
    assert "seed=3" in metrics["train_config"].replace(" ", "")
