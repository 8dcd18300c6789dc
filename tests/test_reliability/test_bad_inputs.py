"""Bad inputs not covered elsewhere get a message naming the file or key and what to do (docs/errors.md)."""
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from mmseg.registry import MODELS
from PIL import Image

from soma.datasets import DGGTA5Dataset
from soma.models import DINOv2

from ..conftest import REPO, tiny_segmentor_cfg
from ..test_tools.test_train import CONFIG, make_cityscapes_like


def test_pretrained_weights_of_another_size_are_refused_with_shapes(tmp_path):
    wide = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56, embed_dim=96,
                             depth=4, num_heads=2)
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    backbone = DINOv2(arch="tiny", img_size=56, patch_size=14, out_scales=None, frozen=True,
                      init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "wide.pth")))
    expected = r"wide\.pth. has weights of the wrong shape.*cls_token: \(1, 1, 96\) vs \(1, 1, 64\)"
    with pytest.raises(ValueError, match=expected):
        backbone.init_weights()


def test_missing_pretrained_file_points_to_the_converter(tmp_path):
    backbone = DINOv2(arch="tiny", img_size=64, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "no.pth")))
    with pytest.raises(FileNotFoundError, match=r"no\.pth' does not exist.*checkpoints/README\.md"):
        backbone.init_weights()


def test_unknown_soma_option_in_a_config_names_the_valid_ones():
    cfg = tiny_segmentor_cfg(peft=dict(type="SoMA", rank=4))
    with pytest.raises(ValueError, match=r"unknown SoMA option\(s\) \['rank'\]; valid options are \['r', "):
        MODELS.build(cfg)


def test_undecodable_image_names_the_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images/0001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "labels/0001_labelTrainIds.png")
    dataset = DGGTA5Dataset(data_root=str(tmp_path), pipeline=[dict(type="LoadImageFromFile")])
    with pytest.raises(Exception, match=r"images/0001\.png"):
        dataset[0]


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_tta_without_a_tta_pipeline_says_so(tmp_path):
    make_cityscapes_like(tmp_path / "data", num_images=1)
    config = tmp_path / "no_tta.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    result = subprocess.run([sys.executable, "tools/test.py", str(config), str(tmp_path / "any.pth"), "--tta"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "--tta needs `tta_pipeline` and `tta_model`" in result.stderr


def test_unconverted_training_labels_are_refused_with_the_file():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model = MODELS.build(tiny_segmentor_cfg(num_classes=19))
    sample = SegDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64),
                                         seg_map_path="data/gta/labels/00001.png"))
    sample.gt_sem_seg = PixelData(data=torch.full((1, 64, 64), 26))  # a raw Cityscapes id (car), not a trainId
    with pytest.raises(ValueError, match=r"00001\.png' holds ids \[26\] outside the 19 classes.*convert_datasets"):
        model.loss(torch.zeros(1, 3, 64, 64), [sample])
