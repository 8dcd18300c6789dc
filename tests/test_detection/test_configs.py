"""The DWD detector configs load, name only registered types and build at full size (meta device, no weights)."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config

from soma.peft import trainable_parameters
from soma.config import check_config_types

from ..conftest import REPO

DINOV2 = REPO / "configs/soma/dino_dinov2-l_soma_dwd.py"
EVA02 = REPO / "configs/soma/dino_eva02-l_soma_dwd.py"
PUBLISHED = "DS (daytime_clear test) 69.4, DF (daytime_foggy) 51.0, DR (dusk_rainy) 59.3, NR (night_rainy) 47.6"


@pytest.mark.parametrize("path", [DINOV2, EVA02], ids=["dinov2", "eva02"])
def test_builds_at_full_size(path, mmdet_scope):
    from mmdet.registry import MODELS

    cfg = Config.fromfile(str(path))
    check_config_types(cfg)
    assert cfg.default_scope == "mmdet"
    cfg.model.backbone.init_cfg = None  # no weights here; the structure is what is checked
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == "DINO" and model.num_queries == 900 and model.embed_dims == 256
    assert model.bbox_head.num_classes == 7 and len(model.encoder.layers) == 6 and len(model.decoder.layers) == 6
    assert model.backbone.arch == "large" and model.backbone.out_indices == (7, 11, 15, 23)
    assert [conv.conv.in_channels for conv in model.neck.convs] == [1024] * 4
    summary = trainable_parameters(model.backbone)
    if path == DINOV2:
        assert type(model.backbone).__name__ == "DINOv2" and summary.trainable == 4_866_048
    else:
        assert type(model.backbone).__name__ == "EVA02" and summary.trainable > 0


def test_eva02_variant_differs_only_in_the_backbone():
    dinov2, eva02 = Config.fromfile(str(DINOV2)), Config.fromfile(str(EVA02))
    assert eva02.model.backbone.type == "EVA02" and eva02.model.backbone.init_cfg.checkpoint != \
        dinov2.model.backbone.init_cfg.checkpoint
    eva02.model.backbone = dinov2.model.backbone
    assert eva02.to_dict() == dinov2.to_dict()


def test_published_schedule_data_and_targets():
    cfg = Config.fromfile(str(DINOV2))
    assert PUBLISHED in DINOV2.read_text() and "NC (night_sunny) 59.3" in DINOV2.read_text()
    assert cfg.optim_wrapper.optimizer.type == "AdamW" and cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.optim_wrapper.clip_grad.max_norm == 35 and cfg.train_cfg.max_iters == 40000
    lr, decay = cfg.param_scheduler
    assert lr.type == "MultiStepLR" and lr.end == 40000 and not lr.by_epoch
    assert decay.type == "CosineAnnealingParamScheduler" and decay.param_name == "weight_decay"
    train = cfg.train_dataloader.dataset
    assert (train.type, train.domain, train.split) == ("DWDDataset", "daytime_clear", "train")
    tests = cfg.test_dataloader.dataset.datasets
    assert [(d.domain, d.split) for d in tests] == [("daytime_clear", "test"), ("daytime_foggy", "all"),
                                                    ("dusk_rainy", "all"), ("night_rainy", "all"),
                                                    ("night_sunny", "all")]
    assert all("domain" in d.pipeline[-1].meta_keys for d in tests)
    assert cfg.val_dataloader.dataset.domain == "daytime_clear"  # model selection never sees unseen domains
    assert cfg.test_evaluator.type == "DomainVOCMetric" and cfg.test_evaluator.eval_mode == "11points"
    assert cfg.test_evaluator.mean_over == ["daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny"]


def test_trunk_is_shared_for_other_detr_detectors():
    trunk = Config.fromfile(str(REPO / "configs/_base_/models/dinov2-l_soma_det.py"))
    assert set(trunk.model) == {"data_preprocessor", "backbone", "neck"}  # a Co-DINO config adds only its detector
    dino = Config.fromfile(str(REPO / "configs/_base_/models/dino_dinov2-l_soma.py"))
    assert dino.model.backbone == trunk.model.backbone and dino.model.neck == trunk.model.neck
