"""tools/test.sh refuses the five wrong checkpoints (exit status non-zero, the cause named, no traceback), and
--non-strict evaluates anyway. Before strict loading all five printed metrics and exited 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from soma.peft import soma_state_dict
from soma.peft.state import ADAPTER_FORMAT

from ..conftest import REPO
from ..test_tools.test_train import CONFIG, make_cityscapes_like


def save(model: torch.nn.Module, path, **meta) -> str:
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return str(path)


def build(config, **changes) -> torch.nn.Module:
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    if "width" in changes:
        cfg.model.backbone.timm_kwargs = dict(embed_dim=changes["width"])
        cfg.model.decode_head.in_channels = [changes["width"]] * 4
    if "r" in changes:
        cfg.model.backbone.peft = dict(type="SoMA", r=changes["r"], start_block=2) if changes["r"] else None
    if "num_classes" in changes:
        cfg.model.decode_head.num_classes = changes["num_classes"]
        cfg.model.decode_head.loss_cls.class_weight = [1.0] * changes["num_classes"] + [0.1]
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def run_test_sh(config, checkpoint, work_dir, *extra):
    return subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), checkpoint, "--work-dir", str(work_dir),
                           *extra], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHON=sys.executable))


@pytest.mark.slow
def test_test_sh_refuses_the_five_wrong_checkpoints(tmp_path):
    make_cityscapes_like(tmp_path / "data", num_images=1)
    config = tmp_path / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    good = build(config)
    head = {k: v for k, v in good.state_dict().items() if not k.startswith("backbone.")}
    torch.save(dict(format=ADAPTER_FORMAT, backbone=soma_state_dict(good.backbone.vit), head=head, meta={}),
               tmp_path / "adapter.pth")
    cases = {
        save(build(config, width=96), tmp_path / "arch.pth"): "another backbone: embedding width 96",
        save(build(config, r=2), tmp_path / "rank.pth"): "another SoMA rank: the checkpoint was trained with r=2",
        str(tmp_path / "adapter.pth"): "adapter-only file (tools/extract_adapter.py)",
        save(build(config, r=None), tmp_path / "merged.pth", merged=True): "model.backbone.peft=None",
        save(build(config, num_classes=7), tmp_path / "classes.pth"): "the checkpoint's decode_head has 7 classes",
    }
    for index, (checkpoint, cause) in enumerate(cases.items()):
        result = run_test_sh(config, checkpoint, tmp_path / f"work{index}")
        assert result.returncode != 0, (checkpoint, result.stdout[-2000:])
        message = f"error: checkpoint '{checkpoint}' does not fit the config's model"
        assert message in result.stderr, result.stderr[-3000:]
        assert cause in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert not (tmp_path / f"work{index}" / "metrics.json").exists()

    # The merged one is right with peft=None; --non-strict evaluates the wrong class count anyway, saying so.
    merged = next(c for c in cases if c.endswith("merged.pth"))
    result = run_test_sh(config, merged, tmp_path / "ok", "--cfg-options", "model.backbone.peft=None")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mIoU" in json.loads((tmp_path / "ok" / "metrics.json").read_text())
    classes = next(c for c in cases if c.endswith("classes.pth"))
    result = run_test_sh(config, classes, tmp_path / "forced", "--non-strict")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--non-strict: checkpoint" in result.stdout + result.stderr and "NOT loaded" in result.stdout + result.stderr


@pytest.mark.slow
def test_resume_with_a_changed_rank_names_the_changed_setting(tmp_path):
    make_cityscapes_like(tmp_path / "data", num_images=2)
    config = tmp_path / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    train = [sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir", str(tmp_path / "work")]
    result = subprocess.run(train + ["--cfg-options", "train_cfg.max_iters=2"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run(train + ["--resume", "--cfg-options", "model.backbone.peft.r=2"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --resume: the config no longer fits the checkpoint '"), result.stderr[-3000:]
    assert "model.backbone.peft.r: 4 → 2" in last and "another SoMA rank" in last and "Traceback" not in result.stderr
