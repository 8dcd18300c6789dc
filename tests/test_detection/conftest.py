"""Shared by the detection tests: a tiny generated copy of the DWD layout, mmdet's default scope, and the
train-then-test run of the tiny detector configs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DWD_CLASSES = ("bus", "bike", "car", "motor", "person", "rider", "truck")
DOMAIN_CAST = {  # a colour cast per domain, so the domains look different (as in the real data)
    "daytime_clear": (1.0, 1.0, 1.0), "daytime_foggy": (0.9, 0.9, 0.9), "dusk_rainy": (0.6, 0.5, 0.7),
    "night_rainy": (0.3, 0.3, 0.4), "night_sunny": (0.35, 0.3, 0.25)}


def voc_xml(name: str, size: int, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    """A VOC annotation: ``objects`` are (class, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    body = "".join(
        f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{difficult}"
        f"</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
        "</object>" for cls, (x1, y1, x2, y2), difficult in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size>{body}</annotation>")


def make_dwd_like(root: Path, num_train: int = 4, num_test: int = 2, size: int = 64) -> dict[str, list[str]]:
    """Five DWD domains under ``root``: ``<domain>/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``.

    Each image shows one large car (a bright box) and, in odd images, a person (a dark tall box) on a grey road;
    every domain has ``train.txt`` and ``test.txt`` lists. Returns the image ids per domain.
    """
    rng = np.random.default_rng(0)
    ids: dict[str, list[str]] = {}
    for domain, cast in DOMAIN_CAST.items():
        voc = root / domain / "VOC2007"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        names = [f"{domain[:3]}{i:04d}" for i in range(num_train + num_test)]
        for index, name in enumerate(names):
            image = np.full((size, size, 3), 110, np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
            x1, y1 = int(rng.integers(4, 20)), int(rng.integers(20, 30))
            car = (x1, y1, x1 + 30, y1 + 20)
            image[car[1] - 1:car[3], car[0] - 1:car[2]] = (220, 40, 40)
            objects = [("car", car, 0)]
            if index % 2:
                person = (size - 14, 8, size - 6, 40)
                image[person[1] - 1:person[3], person[0] - 1:person[2]] = (30, 30, 160)
                objects.append(("person", person, 0))
            image = (image * np.array(cast)).astype(np.uint8)
            Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
            (voc / "Annotations" / f"{name}.xml").write_text(voc_xml(name, size, objects))
        (voc / "ImageSets/Main/train.txt").write_text("\n".join(names[:num_train]) + "\n")
        (voc / "ImageSets/Main/test.txt").write_text("\n".join(names[num_train:]) + "\n")
        ids[domain] = names
    return ids


@pytest.fixture
def dwd_root(tmp_path: Path) -> Path:
    make_dwd_like(tmp_path / "dwd")
    return tmp_path / "dwd"


@pytest.fixture
def mmdet_scope():
    """Build from mmdet's registries, as the detection configs' `default_scope = "mmdet"` does."""
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmdet"):
        yield


@dataclass
class TrainTestRun:
    """What a tiny train-then-test run left behind."""

    records: list[dict]  # training log records with a loss, in order
    train_log: str  # stdout + stderr of tools/train.py
    metrics: dict  # test run's metrics.json
    test_stdout: str
    per_class: dict  # test run's per_class.json


def train_then_test(tmp_path: Path, config_template: str, iters: int) -> TrainTestRun:
    """Write generated DWD data and ``config_template`` (``{repo}``, ``{data}``, ``{iters}``), run tools/train.py,
    then tools/test.sh on the last checkpoint; both must succeed."""
    from ..conftest import REPO

    make_dwd_like(tmp_path / "dwd")
    config = tmp_path / "tiny_detector_dwd.py"
    config.write_text(config_template.format(repo=REPO, data=tmp_path / "dwd", iters=iters))
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="2")
    train = subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir",
                            str(tmp_path / "work")], capture_output=True, text=True, cwd=REPO, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    (scalars,) = (tmp_path / "work").glob("*/vis_data/scalars.json")
    records = [record for record in map(json.loads, scalars.read_text().splitlines()) if "loss" in record]
    assert len(records) == iters
    checkpoint = tmp_path / "work" / f"iter_{iters}.pth"
    test = subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), str(checkpoint), "1", "--work-dir",
                           str(tmp_path / "test")], capture_output=True, text=True, cwd=REPO, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics, per_class = (json.loads((tmp_path / "test" / name).read_text()) for name in ("metrics.json",
                                                                                           "per_class.json"))
    return TrainTestRun(records, train.stdout + train.stderr, metrics, test.stdout, per_class)


def check_domain_metrics(metrics: dict) -> None:
    """Per-domain mAP for all five domains, and ``mean/mAP`` over the four unseen ones only."""
    from soma.datasets import DWD_DOMAINS as DOMAINS  # the source (daytime_clear) first

    assert {f"{d}/mAP" for d in DOMAINS} | {"mean/mAP"} <= set(metrics)
    assert all(0.0 <= metrics[f"{d}/mAP"] <= 100.0 for d in DOMAINS)
    target_mean = sum(metrics[f"{d}/mAP"] for d in DOMAINS[1:]) / 4
    assert abs(metrics["mean/mAP"] - target_mean) < 0.01
