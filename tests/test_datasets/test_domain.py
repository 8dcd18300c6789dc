"""The domain contract: SoMA's datasets put ``domain`` into every packed data sample whatever the pipeline's
``meta_keys``, and a per-domain metric over a dataset without domains is refused before anything is built."""
from __future__ import annotations

import pytest
from mmengine.config import Config
from mmengine.dataset import ConcatDataset
from mmengine.registry import DefaultScope

from soma.datasets import DGCityscapesDataset, DWDDataset
from soma.config import check_domain_datasets
from soma.utils import ConfigError

from ..conftest import REPO
from ..test_detection.conftest import make_dwd_like
from ..test_tools.test_train import make_cityscapes_like

LOAD = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")]
TTA = dict(type="TestTimeAug", transforms=[[dict(type="Resize", scale_factor=1.0, keep_ratio=True),
                                             dict(type="Resize", scale_factor=0.5, keep_ratio=True)],
                                            [dict(type="PackSegInputs")]])


def citys(root, domain, pipeline):
    return DGCityscapesDataset(data_root=str(root), domain=domain, pipeline=pipeline,
                               data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"))


def test_segmentation_samples_carry_their_domain_without_it_in_meta_keys(tmp_path):
    make_cityscapes_like(tmp_path, num_images=1, size=16)
    packed = LOAD + [dict(type="PackSegInputs")]  # mmseg's default meta_keys: no "domain"
    concat = ConcatDataset([citys(tmp_path, "night", packed), citys(tmp_path, "fog", packed)])
    assert [concat[i]["data_samples"].metainfo["domain"] for i in range(2)] == ["night", "fog"]
    tta = citys(tmp_path, "snow", LOAD + [TTA])[0]  # test-time augmentation packs a list of samples
    assert [sample.metainfo["domain"] for sample in tta["data_samples"]] == ["snow", "snow"]
    unpacked = citys(tmp_path, "rain", LOAD)[0]  # no packing step: the data info's own key
    assert unpacked["domain"] == "rain"


def test_detection_samples_carry_their_domain_without_it_in_meta_keys(tmp_path):
    from mmdet.utils import register_all_modules

    make_dwd_like(tmp_path / "dwd", num_train=1, num_test=1, size=32)
    register_all_modules(init_default_scope=False)
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                dict(type="PackDetInputs")]  # mmdet's default meta_keys: no "domain"
    with DefaultScope.overwrite_default_scope("mmdet"):
        dataset = DWDDataset(domain="night_rainy", split="test", data_root=str(tmp_path / "dwd"), test_mode=True,
                             pipeline=pipeline)
        assert dataset[0]["data_samples"].metainfo["domain"] == "night_rainy"


def loaders(dataset_type, metric, scope="mmseg"):
    dataset = dict(type=dataset_type, data_root="data/x", pipeline=[])
    return Config(dict(default_scope=scope, val_dataloader=dict(dataset=dataset), val_evaluator=dict(type=metric),
                       test_dataloader=dict(dataset=dict(type="ConcatDataset", datasets=[dataset])),
                       test_evaluator=[dict(type=metric)]))


def test_a_per_domain_metric_over_datasets_without_domains_is_refused_at_build_time():
    for dataset_type in ("CityscapesDataset", "mmseg.CityscapesDataset"):
        with pytest.raises(ConfigError, match=r"`val_evaluator` is DomainIoUMetric, .* the val_dataloader dataset "
                                              r"CityscapesDataset gives none: use a SoMA dataset"):
            check_domain_datasets(loaders(dataset_type, "DomainIoUMetric"))
    with pytest.raises(ConfigError, match=r"DomainVOCMetric, .* VOCDataset gives none"):
        check_domain_datasets(loaders("VOCDataset", "DomainVOCMetric", scope="mmdet"))
    check_domain_datasets(loaders("DGCityscapesDataset", "DomainIoUMetric"))
    check_domain_datasets(loaders("DWDDataset", "DomainVOCMetric", scope="mmdet"))
    check_domain_datasets(loaders("CityscapesDataset", "IoUMetric"))  # no domains asked for


@pytest.mark.parametrize("config", ["demo/soma_dinov2-demo_scenes-64.py", "soma/soma_dinov2-l_citys2acdc-512.py",
                                    "soma/dino_dinov2-l_soma_dwd.py"])
def test_published_configs_keep_the_contract(config):
    check_domain_datasets(Config.fromfile(str(REPO / "configs" / config)))


def test_tools_refuse_it_before_building_anything(tmp_path):
    from soma.apis import training

    from ..test_tools.test_train import CONFIG

    config = tmp_path / "no_domains.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "no_data_needed").replace(
        'val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])', 'val_evaluator = dict(type="DomainIoUMetric")'))
    with pytest.raises(SystemExit, match=r"^error: `val_evaluator` is DomainIoUMetric, .* CityscapesDataset gives"):
        training.main([str(config), "--work-dir", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()
