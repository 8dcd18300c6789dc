"""Config mistakes are named before anything is built (soma.config), and tools print them in one line."""
from __future__ import annotations

import sys

import pytest
from mmengine.config import Config

from soma.config import check_legacy_keys, check_num_classes, load_config, warn_patch_padding
from soma.utils import ConfigError

from ..conftest import REPO
from ..test_tools.test_train import CONFIG


def write(path, text):
    path.write_text(text)
    return path


def test_syntax_error_names_the_file_and_line(tmp_path):
    write(tmp_path / "base.py", "model = dict(\n    type='X',\n    num_classes=19\n    depth=4)\n")
    child = write(tmp_path / "child.py", "_base_ = ['base.py']\nx = 1\n")
    with pytest.raises(ConfigError, match=r"config '.*base\.py' line 3: .*num_classes=19"):
        load_config(child)
    broken = write(tmp_path / "broken.py", "a = 1\nb = (2,\n")
    with pytest.raises(ConfigError, match=r"config '.*broken\.py' line 2"):
        load_config(broken)
    write(tmp_path / "undefined.py", "a = 1\n\nb = dict(x=a) | crop_size\n")
    write(tmp_path / "uses.py", "_base_ = ['undefined.py']\n")
    with pytest.raises(ConfigError, match=r"config '.*undefined\.py' line 3: NameError: .*'crop_size'.*b = dict"):
        load_config(tmp_path / "uses.py")
    with pytest.raises(FileNotFoundError, match="no_such.py"):
        load_config(tmp_path / "no_such.py")


@pytest.mark.parametrize("legacy, modern", [
    ("resume_from = 'work_dirs/x/iter_4.pth'", "`resume = True`"),
    ("total_iters = 40000", "IterBasedTrainLoop"),
    ("workflow = [('train', 1)]", "val_interval"),
    ("runner = dict(type='IterBasedRunner', max_iters=40000)", "IterBasedTrainLoop"),
    ("checkpoint_config = dict(interval=4000)", "CheckpointHook"),
    ("data = dict(samples_per_gpu=2, train=dict())", "train_dataloader"),
])
def test_legacy_keys_are_refused_with_the_modern_spelling(legacy, modern):
    cfg = Config.fromstring(f"{legacy}\noptim_wrapper = dict(optimizer=dict(type='AdamW'))\n", ".py")
    with pytest.raises(ConfigError, match=rf"older mmseg/mmcv configs.*`{legacy.split()[0]}` → .*{modern}"):
        check_legacy_keys(cfg)


def test_modern_configs_pass_the_legacy_check():
    for config in sorted((REPO / "configs").rglob("*.py")):
        if "_base_" not in config.parts:
            cfg = Config.fromfile(str(config))
            check_legacy_keys(cfg, config)
            check_num_classes(cfg)


def tiny_config(tmp_path, extra=""):
    return Config.fromstring(CONFIG.format(repo=REPO, data=tmp_path / "data") + extra, ".py")


def test_head_with_more_classes_than_the_dataset_is_refused(tmp_path):
    cfg = tiny_config(tmp_path, "model = dict(decode_head=dict(num_classes=25, "
                                "loss_cls=dict(class_weight=[1.0] * 25 + [0.1])))\n")
    with pytest.raises(ConfigError, match=r"model.decode_head.num_classes is 25 but the train_dataloader dataset "
                                          r"\(CityscapesDataset\) has 19 classes"):
        check_num_classes(cfg)
    cfg = tiny_config(tmp_path, "model = dict(decode_head=dict(loss_cls=dict(class_weight=[1.0] * 4 + [0.1])))\n")
    with pytest.raises(ConfigError, match=r"class_weight has 5 entries but Mask2Former needs num_classes \+ 1 = 20"):
        check_num_classes(cfg)
    check_num_classes(tiny_config(tmp_path))  # 19 and 19


def test_crop_not_a_multiple_of_the_patch_warns_once_with_the_cost(tmp_path, mm_log):
    cfg = tiny_config(tmp_path, "model = dict(data_preprocessor=dict(size=(60, 60)), "
                                "test_cfg=dict(crop_size=(60, 60)))\n")
    warnings = warn_patch_padding(cfg)
    assert warn_patch_padding(cfg) == warnings  # same findings, logged only the first time
    assert len(warnings) == 2
    assert "60x60 is not a multiple of the backbone's patch size 16: every input is padded to 64x64, 13.8% more" \
           in warnings[0]
    assert sum("(the training crop) 60x60 is not a multiple" in message for message in mm_log) == 1
    assert warn_patch_padding(tiny_config(tmp_path)) == []  # 64x64 with patch 16


def test_tools_print_config_errors_in_one_line(tmp_path, monkeypatch):
    from soma.apis import testing as test_tool

    config = write(tmp_path / "old.py", CONFIG.format(repo=REPO, data=tmp_path / "data")
                   + "resume_from = 'work_dirs/old/iter_4.pth'\n")
    monkeypatch.setattr(sys, "argv", ["test.py", str(config), str(tmp_path / "x.pth")])
    with pytest.raises(SystemExit, match=r"^error: config '.*old\.py' uses keys of older mmseg/mmcv configs") as exit_:
        test_tool.main()
    assert "\n" not in str(exit_.value.code)


def test_adapter_methods_are_checked_against_the_adapter_registry_not_the_model_registries():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    from soma.config import UnknownTypeError, check_config_types

    import soma.models  # noqa: F401  (registers the backbones)

    assert SEG_MODELS.get("SoMA") is None and DET_MODELS.get("SoMA") is None  # an adapter config is no model
    check_config_types(dict(model=dict(backbone=dict(type="DINOv2", peft=dict(type="SoMA")))))
    with pytest.raises(UnknownTypeError, match=r"unknown adapter method 'SoMa' at `model.backbone.peft.type`.*"
                                               r"Did you mean: 'SoMA'"):
        check_config_types(dict(model=dict(backbone=dict(type="DINOv2", peft=dict(type="SoMa")))))
