"""The Diverse Weather Dataset (DWD) for single-domain generalised object detection.

DWD (Wu & Deng, CVPR 2022) cuts BDD100K-style driving images into five weather/time-of-day domains, each in
Pascal VOC layout::

    data/dwd/<domain>/VOC2007/Annotations/<id>.xml
    data/dwd/<domain>/VOC2007/JPEGImages/<id>.jpg
    data/dwd/<domain>/VOC2007/ImageSets/Main/{train,test}.txt

Models train on ``daytime_clear`` (its ``train`` list) and are tested on the ``daytime_clear`` test list and on
the four unseen domains. Each sample carries its ``domain`` into the data sample's metainfo, whether or not
``PackDetInputs`` lists it in ``meta_keys`` (:class:`soma.datasets.domain.DomainDatasetMixin`; our configs list
it too: :data:`DET_DOMAIN_META_KEYS`), so one test run over a ``ConcatDataset`` is scored per domain by
:class:`soma.evaluation.DomainVOCMetric`.
"""
from __future__ import annotations

import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Any

from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS
from mmengine.fileio import list_from_file

from .domain import DomainDatasetMixin

DWD_DOMAINS = ("daytime_clear", "daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny")

# What PackDetInputs keeps by default, plus the sample's domain.
DET_DOMAIN_META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction",
                        "domain")

PREPARE_HINT = ("`python tools/convert_datasets/dwd.py DOWNLOAD_DIR --out DATA_ROOT` links the extracted archives "
                "into this layout")


@DATASETS.register_module()
class DWDDataset(DomainDatasetMixin, VOCDataset):
    """One domain of the Diverse Weather Dataset, in its VOC layout, with the 7 DWD classes.

    Args:
        domain: one of :data:`DWD_DOMAINS`; results are reported under ``"<domain>/mAP"``.
        split: the image list ``<domain>/VOC2007/ImageSets/Main/<split>.txt`` (``"train"``, ``"test"``), or
            ``"all"`` for every annotated image of the domain (``Annotations/*.xml``): the unseen domains are
            tested on all their images.
        data_root: the folder holding the domain folders. Default: ``"data/dwd"``.
        **kwargs: :class:`mmdet.datasets.VOCDataset` arguments (``pipeline``, ``test_mode``, ``filter_cfg``,
            ...). ``ann_file`` and ``data_prefix`` follow from ``domain`` and ``split``.
    """

    METAINFO = {
        "classes": ("bus", "bike", "car", "motor", "person", "rider", "truck"),
        "palette": [(0, 60, 100), (119, 11, 32), (0, 0, 142), (0, 0, 230), (220, 20, 60), (255, 0, 0),
                    (0, 0, 70)],
    }

    def __init__(self, domain: str, split: str = "train", data_root: str = "data/dwd", **kwargs: Any) -> None:
        if domain not in DWD_DOMAINS:
            raise ValueError(f"`domain` must be one of {DWD_DOMAINS}, got {domain!r}.")
        if not isinstance(split, str) or not split or "/" in split:
            raise ValueError(f"`split` must be a list name such as 'train', 'test' or 'all', got {split!r}.")
        for derived in ("ann_file", "data_prefix"):
            if derived in kwargs:
                raise TypeError(f"DWDDataset sets `{derived}` from `domain` and `split`; remove `{derived}` from the "
                                "dataset config (point `data_root` at the folder holding the domain folders).")
        self.domain = domain
        self.split = split
        voc_root = osp.join(domain, "VOC2007")
        ann_file = "" if split == "all" else osp.join(voc_root, "ImageSets", "Main", f"{split}.txt")
        super().__init__(data_root=data_root, ann_file=ann_file, data_prefix=dict(sub_data_root=voc_root),
                         **kwargs)

    def _image_ids(self) -> list[str]:
        if not osp.isdir(self.sub_data_root):
            raise FileNotFoundError(
                f"DWDDataset ({self.domain}): the domain folder '{self.sub_data_root}' does not exist; expected the "
                f"layout dwd/<domain>/VOC2007/{{Annotations,JPEGImages,ImageSets/Main}} under `data_root` "
                f"'{self.data_root}': {PREPARE_HINT}.")
        if self.split == "all":
            folder = osp.join(self.sub_data_root, self.ann_subdir)
            if not osp.isdir(folder):
                raise FileNotFoundError(f"DWDDataset ({self.domain}): the annotation folder '{folder}' does not "
                                        f"exist; {PREPARE_HINT}.")
            return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".xml"))
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f"DWDDataset ({self.domain}): the image list '{self.ann_file}' does not exist (expected "
                f"dwd/{self.domain}/VOC2007/ImageSets/Main/{self.split}.txt); check `split` or use split='all' "
                f"for every annotated image of the domain.")
        return [line.strip() for line in list_from_file(self.ann_file, backend_args=self.backend_args)
                if line.strip()]

    def load_data_list(self) -> list[dict]:
        """Read the image list, parse each VOC XML file and tag every sample with the domain."""
        self.cat2label = {name: index for index, name in enumerate(self._metainfo["classes"])}
        data_list = []
        for img_id in self._image_ids():
            info = self.parse_data_info(dict(
                img_id=img_id, file_name=osp.join(self.img_subdir, f"{img_id}.jpg"),
                xml_path=osp.join(self.sub_data_root, self.ann_subdir, f"{img_id}.xml")))
            info["domain"] = self.domain
            data_list.append(info)
        if not data_list:
            raise FileNotFoundError(f"DWDDataset ({self.domain}): no images listed for split '{self.split}' under "
                                    f"'{self.sub_data_root}'; {PREPARE_HINT}.")
        # Check the ends of the list only: a stat of every image would slow start-up on network storage.
        for info in (data_list[0], data_list[-1]):
            if not osp.isfile(info["img_path"]):
                raise FileNotFoundError(f"DWDDataset ({self.domain}): image '{info['img_path']}' listed for split "
                                        f"'{self.split}' does not exist; is the download complete?")
        return data_list

    def parse_data_info(self, img_info: dict) -> dict:
        """mmdet's VOC parsing, with errors that name the XML file instead of a bare parser exception."""
        xml_path = img_info["xml_path"]
        if not osp.isfile(xml_path):
            raise FileNotFoundError(f"DWDDataset ({self.domain}): annotation '{xml_path}' of image "
                                    f"'{img_info['img_id']}' does not exist; is the download complete?")
        try:
            self._check_xml(xml_path)
            return super().parse_data_info(img_info)
        except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"DWDDataset ({self.domain}): malformed annotation file '{xml_path}': {exc}. Fix or "
                             "re-download it (each <object> needs <name> and <bndbox> with numeric "
                             "xmin/ymin/xmax/ymax).") from exc

    @staticmethod
    def _check_xml(xml_path: str) -> None:
        """Fail on missing fields mmdet would otherwise trip over with ``'NoneType' has no attribute 'text'``."""
        root = ET.parse(xml_path).getroot()
        size = root.find("size")
        if size is not None:
            for key in ("width", "height"):
                if size.find(key) is None:
                    raise ValueError(f"<size> has no <{key}>")
        for index, obj in enumerate(root.findall("object")):
            if obj.find("name") is None or not (obj.find("name").text or "").strip():
                raise ValueError(f"<object> {index} has no <name>")
            box = obj.find("bndbox")
            if box is None:
                raise ValueError(f"<object> {index} has no <bndbox>")
            for key in ("xmin", "ymin", "xmax", "ymax"):
                if box.find(key) is None:
                    raise ValueError(f"<object> {index} <bndbox> has no <{key}>")
                float(box.find(key).text)  # raises ValueError/TypeError on a non-number
