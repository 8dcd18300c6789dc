"""The benchmark datasets of domain-generalised segmentation, as laid out after ``tools/convert_datasets/``.

Each class fixes one dataset's folders, file suffixes and domain name, so configs only give
``data_root``. All labels are Cityscapes trainIds (19 classes, 255 ignored).

============  ======================  ===========================================  =====================
class         domain                  images / labels under ``data_root``          converter
============  ======================  ===========================================  =====================
GTA5          ``gta``                 ``images/*.png``, ``labels/*_labelTrainIds``  gta5.py
SYNTHIA       ``synthia``             ``RGB``, ``GT/LABELS/*_labelTrainIds``        synthia.py
UrbanSyn      ``urbansyn``            ``rgb/rgb_N.png``, ``ss/ss_N_labelTrainIds``  urbansyn.py
Cityscapes    ``citys``               ``leftImg8bit/<split>``, ``gtFine/<split>``  cityscapes.py
BDD100K       ``bdd``                 ``images/10k/val``, ``labels/sem_seg/masks``  (none: trainIds)
Mapillary     ``map``                 ``half/val_img``, ``half/val_label``          mapillary.py
ACDC          ``acdc-<condition>``    ``rgb_anon/<cond>/<split>``, ``gt/...``       acdc.py
============  ======================  ===========================================  =====================
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping
from typing import Any

from mmseg.registry import DATASETS

from .base import DGSegDataset

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")


def _prefix(img_path: str, seg_map_path: str) -> dict[str, str]:
    return dict(img_path=img_path, seg_map_path=seg_map_path)


@DATASETS.register_module()
class DGGTA5Dataset(DGSegDataset):
    """GTA5 (Richter et al., 2016): 24,966 synthetic frames, the source of the G→C/B/M benchmarks."""

    DOMAIN = "gta"
    PREPARE_HINT = "run tools/convert_datasets/gta5.py data/gta to write the *_labelTrainIds.png files"

    def __init__(self, img_suffix: str = ".png", seg_map_suffix: str = "_labelTrainIds.png",
                 data_prefix: dict | None = None, **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_prefix=data_prefix or _prefix("images", "labels"), **kwargs)


@DATASETS.register_module()
class DGSynthiaDataset(DGSegDataset):
    """SYNTHIA RAND-CITYSCAPES: 9,400 frames whose 16-bit labels the converter maps to trainIds."""

    DOMAIN = "synthia"
    PREPARE_HINT = "run tools/convert_datasets/synthia.py data/synthia to write the *_labelTrainIds.png files"

    def __init__(self, img_suffix: str = ".png", seg_map_suffix: str = "_labelTrainIds.png",
                 data_prefix: dict | None = None, **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_prefix=data_prefix or _prefix("RGB", "GT/LABELS"), **kwargs)


@DATASETS.register_module()
class DGUrbanSynDataset(DGSegDataset):
    """UrbanSyn (Gómez et al., 2024): 7,539 frames named ``rgb/rgb_N.png`` with labels ``ss/ss_N.png``."""

    DOMAIN = "urbansyn"
    PREPARE_HINT = "run tools/convert_datasets/urbansyn.py data/urbansyn to write the *_labelTrainIds.png files"
    IMAGE_PREFIX, LABEL_PREFIX = "rgb_", "ss_"

    def __init__(self, img_suffix: str = ".png", seg_map_suffix: str = "_labelTrainIds.png",
                 data_prefix: dict | None = None, **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_prefix=data_prefix or _prefix("rgb", "ss"), **kwargs)

    def resolve_label_path(self, info: dict) -> dict:
        folder, name = osp.split(info["seg_map_path"])
        if name.startswith(self.IMAGE_PREFIX):
            info["seg_map_path"] = osp.join(folder, self.LABEL_PREFIX + name[len(self.IMAGE_PREFIX):])
        return info


@DATASETS.register_module()
class DGBDD100KDataset(DGSegDataset):
    """BDD100K semantic segmentation (10k images), val split: 1,000 images, labels already in trainIds."""

    DOMAIN = "bdd"
    PREPARE_HINT = "unpack bdd100k_images_10k.zip and bdd100k_sem_seg_labels_trainval.zip into data/bdd100k"

    def __init__(self, img_suffix: str = ".jpg", seg_map_suffix: str = ".png", split: str = "val",
                 data_prefix: dict | None = None, **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_prefix=data_prefix or _prefix(f"images/10k/{split}", f"labels/sem_seg/masks/{split}"),
                         **kwargs)


@DATASETS.register_module()
class DGMapillaryDataset(DGSegDataset):
    """Mapillary Vistas v1.2 validation (2,000 images), 65 classes mapped to 19 and halved by the converter."""

    DOMAIN = "map"
    PREPARE_HINT = "run tools/convert_datasets/mapillary.py data/mapillary (maps 65→19 classes, halves the size)"

    def __init__(self, img_suffix: str = ".png", seg_map_suffix: str = ".png", split: str = "val",
                 data_prefix: dict | None = None, **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         data_prefix=data_prefix or _prefix(f"half/{split}_img", f"half/{split}_label"), **kwargs)


@DATASETS.register_module()
class DGACDCDataset(DGSegDataset):
    """ACDC (Sakaridis et al., 2021), one adverse condition: fog, night, rain or snow.

    Reported as ``acdc-<condition>/mIoU``; a test run over the four conditions pools them with
    ``DomainIoUMetric(groups=dict(acdc=[...]))``. The test split has no public labels: build it with
    ``test_mode=True`` and no ``LoadAnnotations``, and write predictions with tools/acdc_submission.py.

    Args:
        condition: ``"fog"``, ``"night"``, ``"rain"`` or ``"snow"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
    """

    PREPARE_HINT = "unpack rgb_anon_trainvaltest.zip and gt_trainval.zip into data/acdc " \
                   "(tools/convert_datasets/acdc.py checks the layout)"

    def __init__(self, condition: str, split: str = "val", img_suffix: str = "_rgb_anon.png",
                 seg_map_suffix: str = "_gt_labelTrainIds.png", data_prefix: dict | None = None,
                 domain: str | None = None, **kwargs: Any) -> None:
        if condition not in ACDC_CONDITIONS:
            raise ValueError(f"ACDC `condition` must be one of {ACDC_CONDITIONS}, got {condition!r}.")
        if split not in ("train", "val", "test"):
            raise ValueError(f"ACDC `split` must be 'train', 'val' or 'test', got {split!r}.")
        self.condition, self.split = condition, split
        if data_prefix is None:
            data_prefix = _prefix(f"rgb_anon/{condition}/{split}", f"gt/{condition}/{split}")
            if split == "test":  # no public labels: images only
                del data_prefix["seg_map_path"]
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, domain=domain or f"acdc-{condition}",
                         data_prefix=data_prefix, **kwargs)

    @classmethod
    def domain_of(cls, dataset_cfg: Mapping[str, Any]) -> str | None:
        """``domain``, else ``acdc-<condition>``."""
        condition = dataset_cfg.get("condition")
        return dataset_cfg.get("domain") or (f"acdc-{condition}" if isinstance(condition, str) else None)
