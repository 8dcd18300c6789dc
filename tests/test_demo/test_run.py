"""A shortened demo runs the whole path: generate → pretrain → tools/train.py → tools/test.sh → table and PNG."""
from __future__ import annotations

import json

import cv2
import pytest

from tools.demo import run

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier


def test_short_demo_end_to_end(tmp_path, capsys):
    work = tmp_path / "work"
    code = run.main(["--work-dir", str(work), "--data-root", str(tmp_path / "data"),
                     "--pretrained", str(tmp_path / "demo_vit.pth"), "--iters", "30", "--pretrain-steps", "40",
                     "--num-train", "64", "--num-val", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| SoMA (minor, blocks 3-5) |" in printed and "Demo finished in" in printed
    metrics = json.loads((work / "soma/metrics.json").read_text())
    # 8 classes present: a constant or random prediction scores well under 15 mIoU on the source style.
    assert metrics["source/mIoU"] > 15
    assert {"night/mIoU", "fog/mIoU", "palette/mIoU", "mean/mIoU"} <= set(metrics)
    per_class = json.loads((work / "soma/per_class.json").read_text())
    assert per_class["images"]["source"] == 4 and "road" in per_class["per_class"]["night"]["IoU"]
    picture = cv2.imread(str(work / "predictions.png"))
    assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 200
    assert (work / "summary.md").read_text().count("|") > 10
