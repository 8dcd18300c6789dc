"""A shortened demo runs the whole path: generate → pretrain → tools/train.py → tools/test.sh → table and PNG."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from soma.demo.run import run_demo

from ..conftest import REPO

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier


def test_short_demo_end_to_end(tmp_path, capsys):
    work = tmp_path / "work"
    summary = run_demo(work, tmp_path / "data", tmp_path / "demo_vit.pth", iters=30, pretrain_steps=40, num_train=64,
                       num_val=4)
    assert summary == work / "summary.md"
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


def test_command_line_is_the_documented_one():
    """The README's entry point: tools/demo/run.py parses its options and hands them to soma.demo.run."""
    result = subprocess.run([sys.executable, "tools/demo/run.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: run.py [-h] [--all] [--variants NAME [NAME ...]] [--work-dir WORK_DIR]")
    assert "choices: frozen, full, lora, pissa, soma, soma_ema" in " ".join(result.stdout.split())
    assert "--study" in result.stdout and "--seeds N [N ...]" in result.stdout
    assert "The SoMA demo on CPU" in result.stdout


def test_short_study_over_seeds_end_to_end(tmp_path):
    """--study's loop at toy size: two variants, two seeds, each trained and tested, then compared over the seeds."""
    from soma.demo.study import run_seeds

    work = tmp_path / "work"
    summary = run_seeds(work, tmp_path / "data", tmp_path / "vit.pth", seeds=[0, 1], variants=["frozen", "soma"],
                        iters=5, pretrain_steps=40, pretrain_styles="varied", num_train=32, num_val=4)
    assert summary == work / "study.md"
    for variant in ("frozen", "soma"):
        for seed in (0, 1):
            assert json.loads((work / variant / f"seed_{seed}" / "metrics.json").read_text())["seed"] == seed
    table = (work / "comparison.md").read_text()
    assert "| frozen | 2 |" in table and "| soma | 2 |" in table and "Δ target mean vs soma" in table
    assert (work / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "Study finished in" in summary.read_text()
