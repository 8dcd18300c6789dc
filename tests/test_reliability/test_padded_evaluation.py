"""3 processes on 4 images: DefaultSampler(round_up=True) gives every process 2 samples, 2 of them repeats; the
per-domain metric counts each image once and matches 1 process (it counted 6 images before)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from soma.datasets import DOMAIN_META_KEYS

from ..conftest import REPO
from ..test_tools.test_train import CONFIG, make_cityscapes_like

DOMAIN_TEST = """
test_dataloader = dict(batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
                       dataset=dict(type="DGCityscapesDataset", data_root="{data}",
                                    data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"),
                                    pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
                                              dict(type="PackSegInputs", meta_keys={meta_keys!r})]))
test_evaluator = dict(type="DomainIoUMetric")
"""


@pytest.mark.slow
def test_three_processes_count_each_of_four_images_once(tmp_path):
    make_cityscapes_like(tmp_path / "data", num_images=4)
    config = tmp_path / "domain_test.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data")
                      + DOMAIN_TEST.format(data=tmp_path / "data", meta_keys=tuple(DOMAIN_META_KEYS)))
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), tmp_path / "model.pth")
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PORT=str(32500 + os.getpid() % 1000))
    results = {}
    for processes in (1, 3):
        work = tmp_path / f"work{processes}"
        result = subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), str(tmp_path / "model.pth"),
                                 str(processes), "--work-dir", str(work)], capture_output=True, text=True, cwd=REPO,
                                env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        results[processes] = json.loads((work / "per_class.json").read_text())
    assert results[3]["images"] == results[1]["images"] == {"citys": 4}
    assert results[3]["metrics"] == results[1]["metrics"]
