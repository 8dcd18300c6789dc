"""A tiny DINO + tiny-ViT SoMA detector on generated DWD data: tools/train.py then tools/test.sh, on CPU.

The config is the published one with sizes shrunk (tiny_config.py); the loss must fall over a few iterations and
the test run must end with per-domain mAP in metrics.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..conftest import REPO
from .conftest import make_dwd_like
from .tiny_config import TINY_DINO

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier

ITERS = 6
DOMAINS = ("daytime_clear", "daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny")


def test_train_then_test_sh_reports_per_domain_map(tmp_path):
    make_dwd_like(tmp_path / "dwd")
    config = tmp_path / "tiny_dino_dwd.py"
    config.write_text(TINY_DINO.format(repo=REPO, data=tmp_path / "dwd", iters=ITERS))
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="2")

    train = subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir",
                            str(tmp_path / "work")], capture_output=True, text=True, cwd=REPO, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    (scalars,) = (tmp_path / "work").glob("*/vis_data/scalars.json")
    losses = [record["loss"] for record in map(json.loads, scalars.read_text().splitlines()) if "loss" in record]
    assert len(losses) == ITERS
    assert losses[-1] < losses[0] and sum(losses[-2:]) < sum(losses[:2]), losses
    assert "daytime_clear/mAP" in train.stdout + train.stderr  # validation on the source's test list ran

    checkpoint = tmp_path / "work" / f"iter_{ITERS}.pth"
    test = subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), str(checkpoint), "1", "--work-dir",
                           str(tmp_path / "test")], capture_output=True, text=True, cwd=REPO, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / "test/metrics.json").read_text())
    assert {f"{d}/mAP" for d in DOMAINS} | {"mean/mAP"} <= set(metrics)
    assert all(0.0 <= metrics[f"{d}/mAP"] <= 100.0 for d in DOMAINS)
    target_mean = sum(metrics[f"{d}/mAP"] for d in DOMAINS[1:]) / 4
    assert abs(metrics["mean/mAP"] - target_mean) < 0.01  # the mean is over the unseen domains only
    assert "mean/mAP" in test.stdout and "metric" in test.stdout  # the printed table
    per_class = json.loads((tmp_path / "test/per_class.json").read_text())
    assert per_class["images"] == {"daytime_clear": 2, **{d: 6 for d in DOMAINS[1:]}}
    assert per_class["tta"] is False and per_class["test_resolution"] == [[64, 64]] * 5
    assert set(per_class["per_class"]["night_rainy"]["AP"]) == {"bus", "bike", "car", "motor", "person", "rider",
                                                                "truck"}
    print("losses", [round(v, 3) for v in losses], "metrics", metrics)
