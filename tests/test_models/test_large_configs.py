"""The large-backbone configs (DINOv3-7B, DINOv3-H+, DINOv2-g): built at full size on the meta device."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config

from soma.analysis.memory_plan import build_on_meta
from soma.peft import trainable_parameters

from ..conftest import REPO

# config → (arch, width, first adapted block, trainable backbone parameters: adapters + biases)
LARGE = {
    "soma_dinov3-7b_gta2cbm-512.py": ("7b", 4096, 13, 30_081_024 + 663_552),
    "soma_dinov3-hplus_gta2cbm-512.py": ("huge_plus", 1280, 11, None),
    "soma_dinov2-g_gta2cbm-512.py": ("giant", 1536, 13, None),
}


@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_config_builds_on_meta(name):
    arch, width, start, trainable = LARGE[name]
    cfg = Config.fromfile(str(REPO / "configs/soma" / name))
    assert cfg.model.backbone.with_cp and cfg.train_dataloader.batch_size == 4
    model = build_on_meta(cfg)
    backbone = model.backbone
    assert backbone.arch == arch and backbone.embed_dim == width and backbone.peft_config.start_block == start
    assert list(cfg.model.decode_head.in_channels) == [width] * 4
    summary = trainable_parameters(backbone)
    if trainable is not None:
        assert summary.trainable == trainable
    with torch.no_grad():
        maps = backbone.eval()(torch.empty(1, 3, 512, 512, device="meta"))
    assert [tuple(m.shape) for m in maps] == [(1, width, 128, 128), (1, width, 64, 64), (1, width, 32, 32),
                                              (1, width, 16, 16)]


@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_configs_store_the_frozen_base_in_bfloat16(name):
    cfg = Config.fromfile(str(REPO / "configs/soma" / name))
    backbone = build_on_meta(cfg).backbone
    before = sum(p.numel() * p.element_size() for p in backbone.parameters())
    saved = backbone.cast_frozen_base()  # what init_weights() does after the SVD split
    frozen = sum(p.numel() for p in backbone.parameters() if not p.requires_grad)
    assert backbone.frozen_dtype == torch.bfloat16 and 0.99 * 2 * frozen < saved <= 2 * frozen
    assert sum(p.numel() * p.element_size() for p in backbone.parameters()) == before - saved
