"""A G→C/B/M benchmark config, tiny arch swapped in, trains and tests through the published pipelines.

The data are tiny generated copies of the GTA5, Cityscapes, BDD100K and Mapillary layouts (after conversion);
everything else — multi-scale crop pipeline, per-dataset test resolutions, slide inference, per-domain metric,
weight-decay schedule and its log — is the config's own.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from ..conftest import REPO, tiny_segmentor_cfg

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier

CONFIG = REPO / "configs/soma/soma_dinov2-l_gta2cbm-512.py"
LAYOUT = {  # data root -> (image, label) relative paths
    "gta": [("images/0001.png", "labels/0001_labelTrainIds.png"), ("images/0002.png", "labels/0002_labelTrainIds.png")],
    "cityscapes": [("leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png",
                    "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png")],
    "bdd100k": [("images/10k/val/a.jpg", "labels/sem_seg/masks/val/a.png")],
    "mapillary": [("half/val_img/b.png", "half/val_label/b.png")],
}


def make_data(root, size=(128, 256)):  # large enough for the 0.5 TTA scale at stride 32
    rng = np.random.default_rng(0)
    for dataset, pairs in LAYOUT.items():
        for image, label in pairs:
            for path in (root / dataset / image, root / dataset / label):
                path.parent.mkdir(parents=True, exist_ok=True)
            labels = np.zeros(size, np.uint8)
            labels[size[0] // 2:] = 13  # car below road
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / dataset / image)
            Image.fromarray(labels).save(root / dataset / label)


def test_gta2cbm_config_trains_and_tests_with_tiny_arch(tmp_path):
    make_data(tmp_path / "data")
    cfg = Config.fromfile(str(CONFIG))
    published = cfg.model
    cfg.model = tiny_segmentor_cfg(num_classes=19)
    cfg.model.data_preprocessor.size = published.data_preprocessor.size  # 512 crops
    cfg.model.test_cfg = published.test_cfg  # slide 512, stride 341
    cfg.train_dataloader.dataset.data_root = str(tmp_path / "data/gta")
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    for dataset, name in zip(cfg.test_dataloader.dataset.datasets, ("cityscapes", "bdd100k", "mapillary")):
        dataset.data_root = str(tmp_path / "data" / name)
    cfg.train_cfg.update(max_iters=2, val_interval=100)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 2
    (ema,) = [hook for hook in cfg.custom_hooks if hook.type == "FrozenAwareEMAHook"]
    ema.begin_iter = 1  # the config's EMA (from 12k as released) starts within the 2 iterations
    for scheduler in cfg.param_scheduler:
        scheduler.end = 2
    config = tmp_path / "gta2cbm_tiny.py"
    cfg.dump(str(config))
    env = dict(os.environ, PYTHON=sys.executable)
    train = subprocess.run([sys.executable, "tools/train.py", str(config), "--work-dir", str(tmp_path / "work")],
                           cwd=REPO, capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    log = train.stdout + train.stderr
    assert "Iter(train) [2/2]" in log and "weight_decay: 0.0500" in log  # the annealed decay is logged
    test = subprocess.run(["bash", "tools/test.sh", str(config), str(tmp_path / "work/iter_2.pth"), "1",
                           "--work-dir", str(tmp_path / "test")], cwd=REPO, capture_output=True, text=True, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((tmp_path / "test/metrics.json").read_text())
    assert {"citys/mIoU", "bdd/mIoU", "map/mIoU", "mean/mIoU"} <= set(metrics)
    assert metrics["test_resolution"] == [[2048, 1024], [1280, 720], [2048, 1024]]
    per_class = json.loads((tmp_path / "test/per_class.json").read_text())
    assert per_class["test_resolution"] == [[2048, 1024], [1280, 720], [2048, 1024]] and per_class["tta"] is False
    assert per_class["images"] == {"citys": 1, "bdd": 1, "map": 1}
    # test-time augmentation (scales 0.5-1.75 x flip) over the same multi-dataset test set, recorded as such
    tta = subprocess.run(["bash", "tools/test.sh", str(config), str(tmp_path / "work/iter_2.pth"), "1", "--tta",
                          "--work-dir", str(tmp_path / "tta")], cwd=REPO, capture_output=True, text=True, env=env)
    assert tta.returncode == 0, tta.stderr[-3000:]
    assert json.loads((tmp_path / "tta/per_class.json").read_text())["tta"] is True
    assert "mean/mIoU" in json.loads((tmp_path / "tta/metrics.json").read_text())
