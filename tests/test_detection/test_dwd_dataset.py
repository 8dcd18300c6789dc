"""DWDDataset on a generated copy of the DWD layout: domains, splits, boxes, domain metainfo and errors."""
from __future__ import annotations

import shutil

import pytest

from soma.datasets import DWD_DOMAINS, DWDDataset

from .conftest import DWD_CLASSES, voc_xml

META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction", "domain")
PIPELINE = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
            dict(type="PackDetInputs", meta_keys=META_KEYS)]


@pytest.mark.slow  # every domain and split of the generated DWD copy (11 s)
def test_every_domain_and_split(dwd_root, mmdet_scope):
    assert DWD_DOMAINS == ("daytime_clear", "daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny")
    for domain in DWD_DOMAINS:
        train = DWDDataset(domain=domain, split="train", data_root=str(dwd_root))
        test = DWDDataset(domain=domain, split="test", data_root=str(dwd_root), test_mode=True)
        every = DWDDataset(domain=domain, split="all", data_root=str(dwd_root), test_mode=True)
        assert (len(train), len(test), len(every)) == (4, 2, 6)
        assert {i["img_id"] for i in every.data_list} == {i["img_id"] for i in train.data_list + test.data_list}
        assert all(info["domain"] == domain for info in every.data_list)
        assert train.metainfo["classes"] == DWD_CLASSES and train.metainfo["dataset_type"] == "VOC2007"


def test_boxes_follow_voc_conventions(dwd_root, mmdet_scope):
    dataset = DWDDataset(domain="daytime_clear", split="train", data_root=str(dwd_root))
    info = dataset.get_data_info(1)  # odd images have a car and a person
    labels = [instance["bbox_label"] for instance in info["instances"]]
    assert labels == [DWD_CLASSES.index("car"), DWD_CLASSES.index("person")]
    person = info["instances"][1]["bbox"]
    assert person == [64 - 14 - 1, 8 - 1, 64 - 6 - 1, 40 - 1]  # 1-based inclusive VOC corners minus one
    assert (info["width"], info["height"]) == (64, 64)
    assert info["img_path"].endswith("daytime_clear/VOC2007/JPEGImages/day0001.jpg")


def test_domain_reaches_the_data_sample_through_a_concat_dataset(dwd_root, mmdet_scope):
    from mmengine.dataset import ConcatDataset

    concat = ConcatDataset([DWDDataset(domain=d, split="test", data_root=str(dwd_root), test_mode=True,
                                       pipeline=PIPELINE) for d in DWD_DOMAINS])
    domains = [concat[i]["data_samples"].metainfo["domain"] for i in range(len(concat))]
    assert domains == [d for d in DWD_DOMAINS for _ in range(2)]
    sample = concat[1]["data_samples"]
    assert sample.gt_instances.bboxes.shape == (2, 4) and sample.gt_instances.labels.tolist() == [2, 4]


def test_difficult_objects_are_ignored_and_unknown_classes_skipped(dwd_root, mmdet_scope):
    xml = dwd_root / "night_rainy/VOC2007/Annotations/nig0000.xml"
    xml.write_text(voc_xml("nig0000", 64, [("car", (5, 5, 30, 30), 0), ("truck", (33, 5, 60, 30), 1),
                                           ("traffic light", (1, 1, 4, 4), 0)]))
    dataset = DWDDataset(domain="night_rainy", split="train", data_root=str(dwd_root))
    instances = dataset.get_data_info(0)["instances"]
    assert [(i["bbox_label"], i["ignore_flag"]) for i in instances] == [(2, 0), (6, 1)]


def test_missing_domain_folder_names_the_expected_layout(dwd_root, mmdet_scope):
    shutil.rmtree(dwd_root / "dusk_rainy")
    with pytest.raises(FileNotFoundError, match=r"dusk_rainy/VOC2007.*dwd/<domain>/VOC2007"):
        DWDDataset(domain="dusk_rainy", split="all", data_root=str(dwd_root))
    with pytest.raises(FileNotFoundError, match=r"daytime_foggy/VOC2007/ImageSets/Main/val\.txt"):
        DWDDataset(domain="daytime_foggy", split="val", data_root=str(dwd_root))


def test_malformed_xml_names_the_file(dwd_root, mmdet_scope):
    xml = dwd_root / "daytime_foggy/VOC2007/Annotations/day0002.xml"
    xml.write_text("<annotation><object><name>car</name>")  # truncated
    with pytest.raises(ValueError, match=r"malformed annotation file '.*daytime_foggy/VOC2007/Annotations/day0002"):
        DWDDataset(domain="daytime_foggy", split="train", data_root=str(dwd_root))
    xml.write_text(voc_xml("day0002", 64, [("car", (5, 5, 30, 30), 0)]).replace("<ymax>30</ymax>", ""))
    with pytest.raises(ValueError, match=r"day0002\.xml.*<bndbox> has no <ymax>"):
        DWDDataset(domain="daytime_foggy", split="train", data_root=str(dwd_root))
    xml.write_text(voc_xml("day0002", 64, [("car", (5, 5, 30, 30), 0)]).replace("<xmin>5</xmin>", "<xmin>a</xmin>"))
    with pytest.raises(ValueError, match=r"day0002\.xml"):
        DWDDataset(domain="daytime_foggy", split="train", data_root=str(dwd_root))


def test_missing_image_and_bad_arguments(dwd_root, mmdet_scope):
    (dwd_root / "night_sunny/VOC2007/JPEGImages/nig0003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"nig0003\.jpg"):
        DWDDataset(domain="night_sunny", split="train", data_root=str(dwd_root))
    with pytest.raises(ValueError, match="`domain` must be one of"):
        DWDDataset(domain="Night-Sunny", data_root=str(dwd_root))
    with pytest.raises(TypeError, match="`ann_file`"):
        DWDDataset(domain="night_sunny", ann_file="x.txt", data_root=str(dwd_root))

