"""Shared fixtures: the demo-size config (same types as the published one, smaller sizes)."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config, ConfigDict

REPO = Path(__file__).resolve().parents[1]
MODEL_BASE = REPO / "configs/_base_/models/mask2former_dinov2-l_soma.py"
TINY_MODEL = REPO / "configs/demo/mask2former_dinov2-tiny_soma.py"


def tiny_segmentor_cfg(backbone_type: str = "DINOv2", num_classes: int = 4, peft: dict | None = None,
                       checkpoint: str | None = None) -> ConfigDict:
    """The demo-size model config, with the backbone type (a one-line edit) and class count set."""
    model = Config.fromfile(str(TINY_MODEL)).model
    model.backbone.type = backbone_type
    if peft is not None:
        model.backbone.peft = peft
    if checkpoint:
        model.backbone.init_cfg = dict(type="Pretrained", checkpoint=checkpoint)
    model.decode_head.num_classes = num_classes
    model.decode_head.loss_cls.class_weight = [1.0] * num_classes + [0.1]
    return model


@pytest.fixture
def tiny_segmentor_config():
    return tiny_segmentor_cfg


@pytest.fixture(autouse=True, scope="session")
def mmseg_default_scope():
    """Build from mmseg's registries by default, as the configs' `default_scope = "mmseg"` does."""
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
