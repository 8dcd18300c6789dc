"""A tiny Co-DINO + tiny-ViT SoMA detector on generated DWD data: tools/train.py then tools/test.sh, on CPU.

The config is the published Co-DINO one with sizes shrunk (tiny_codino_config.py): the loss must fall, every
auxiliary head and positive query group must appear in the training log, and the test run must end with
per-domain mAP and their mean in metrics.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..conftest import REPO
from .conftest import make_dwd_like
from .tiny_codino_config import TINY_CODINO

ITERS = 6
DOMAINS = ("daytime_clear", "daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny")
LOGGED = ("loss_rpn_cls", "roi.loss_cls", "roi.loss_bbox", "atss.loss_cls", "atss.loss_centerness",
          "pos_roi.loss_cls", "pos_atss.loss_iou", "dn_loss_cls", "enc_loss_cls")


@pytest.mark.slow
def test_train_then_test_sh_reports_per_domain_map(tmp_path):
    make_dwd_like(tmp_path / "dwd")
    config = tmp_path / "tiny_codino_dwd.py"
    config.write_text(TINY_CODINO.format(repo=REPO, data=tmp_path / "dwd", iters=ITERS))
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="2")

    train = subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir",
                            str(tmp_path / "work")], capture_output=True, text=True, cwd=REPO, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    (scalars,) = (tmp_path / "work").glob("*/vis_data/scalars.json")
    records = [record for record in map(json.loads, scalars.read_text().splitlines()) if "loss" in record]
    losses = [record["loss"] for record in records]
    assert len(losses) == ITERS
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert all(key in record for record in records for key in LOGGED)
    assert "daytime_clear/mAP" in train.stdout + train.stderr and "night_rainy/mAP" in train.stdout + train.stderr

    checkpoint = tmp_path / "work" / f"iter_{ITERS}.pth"
    test = subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), str(checkpoint), "1", "--work-dir",
                           str(tmp_path / "test")], capture_output=True, text=True, cwd=REPO, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / "test/metrics.json").read_text())
    assert {f"{d}/mAP" for d in DOMAINS} | {"mean/mAP"} <= set(metrics)
    assert all(0.0 <= metrics[f"{d}/mAP"] <= 100.0 for d in DOMAINS)
    target_mean = sum(metrics[f"{d}/mAP"] for d in DOMAINS[1:]) / 4
    assert abs(metrics["mean/mAP"] - target_mean) < 0.01  # the mean is over the unseen domains only
    assert "mean/mAP" in test.stdout and "night_sunny/mAP" in test.stdout  # the printed table
    per_class = json.loads((tmp_path / "test/per_class.json").read_text())
    assert per_class["test_resolution"] == [(64, 64)] * 5 or per_class["test_resolution"] == [[64, 64]] * 5
    print("losses", [round(v, 3) for v in losses], "metrics", metrics)
