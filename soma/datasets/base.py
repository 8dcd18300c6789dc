"""Segmentation datasets that know which domain they are.

Every sample carries ``domain`` (the dataset's short name, e.g. ``"citys"``, ``"bdd"``, ``"night"``) into its
data sample's metainfo, so a single test run over several datasets can be scored per dataset
(:class:`soma.evaluation.DomainIoUMetric`) without guessing from file paths. The dataset writes it into what the
pipeline packed (:class:`soma.datasets.domain.DomainDatasetMixin`), whether or not ``PackSegInputs`` lists
``"domain"`` in its ``meta_keys`` (our dataset configs list it too: :data:`DOMAIN_META_KEYS`).
"""
from __future__ import annotations

import os.path as osp
from typing import Any

import numpy as np

from mmseg.datasets import BaseSegDataset, CityscapesDataset
from mmseg.registry import DATASETS

from soma.utils import DataError

from .domain import DomainDatasetMixin

# What PackSegInputs keeps by default, plus the sample's domain.
DOMAIN_META_KEYS = ("img_path", "seg_map_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip",
                    "flip_direction", "reduce_zero_label", "domain")


def check_label_channels(path: str, prefix: str = "", prepare_hint: str = "see data/README.md") -> None:
    """Refuse a label map with more than one channel (a colour visualisation, not class ids), from its header.

    mmseg loads such a file as an (H, W, 3) array, which fails later in the pipeline, the loss or the metric with a
    shape error that names no file. Files that cannot be opened are left to the loaders, which name them.

    Raises:
        DataError: the file's image has more than one band (RGB, RGBA, LA, ...).
    """
    from PIL import Image

    try:
        with Image.open(path) as label:
            bands, mode = label.getbands(), label.mode
    except OSError:
        return
    if len(bands) != 1:
        raise DataError(f"{prefix}label map '{path}' has {len(bands)} channels (mode {mode}) but a label map has one: "
                        "a class id per pixel, not a colour image; point `seg_map_suffix` at the trainId files "
                        f"(*_labelTrainIds.png) or convert the labels ({prepare_hint}).")


@DATASETS.register_module()
class DGSegDataset(DomainDatasetMixin, BaseSegDataset):
    """A folder of images and a folder of trainId label maps, in the 19 Cityscapes classes, with a domain name
    that every sample carries into its data sample's metainfo.

    Subclasses fix the layout of one benchmark dataset (folders, suffixes, default domain name, the converter
    that produces it); this class also serves any dataset already converted to trainIds.

    Args:
        domain: the name results are reported under (``"<domain>/mIoU"``). Default: the class's ``DOMAIN``.
        subset_ratio: keep this fraction of the images (at least one), a fixed random subset drawn with
            ``subset_seed`` from the sorted file list (e.g. ``1 / 16`` for "Cityscapes 1/16").
        subset_seed: seed of that draw.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments (``data_root``, ``data_prefix``, suffixes,
            ``pipeline``, ...).
    """

    METAINFO = CityscapesDataset.METAINFO
    DOMAIN = "dataset"
    # How to produce the layout this class reads, for the missing-folder error.
    PREPARE_HINT = "see data/README.md"

    def __init__(self, *args: Any, domain: str | None = None, subset_ratio: float = 1.0, subset_seed: int = 0,
                 **kwargs: Any) -> None:
        self.domain = domain or self.DOMAIN
        if not isinstance(self.domain, str) or not self.domain or "/" in self.domain:
            raise ValueError(f"`domain` must be a non-empty name without '/', got {self.domain!r}.")
        if not 0.0 < subset_ratio <= 1.0:
            raise ValueError(f"`subset_ratio` must lie in (0, 1], got {subset_ratio!r}.")
        self.subset_ratio, self.subset_seed = subset_ratio, subset_seed
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list[dict]:
        for key, what in (("img_path", "image"), ("seg_map_path", "label")):
            folder = self.data_prefix.get(key)
            if folder and not osp.isdir(folder):
                raise FileNotFoundError(
                    f"{type(self).__name__} ({self.domain}): the {what} folder '{folder}' does "
                    f"not exist; check `data_root` / `data_prefix`, or prepare the data ({self.PREPARE_HINT}).")
        data_list = [self.resolve_label_path(info) for info in super().load_data_list()]
        if not data_list:
            raise FileNotFoundError(
                f"{type(self).__name__} ({self.domain}): no '*{self.img_suffix}' images under "
                f"'{self.data_prefix.get('img_path')}'; check the folder and `img_suffix` ({self.PREPARE_HINT}).")
        if self.subset_ratio < 1.0:
            count = max(1, round(len(data_list) * self.subset_ratio))
            keep = np.random.default_rng(self.subset_seed).choice(len(data_list), size=count, replace=False)
            data_list = [data_list[i] for i in sorted(keep)]
        for info in data_list:
            info["domain"] = self.domain
        missing = [info["seg_map_path"] for info in data_list[:1] + data_list[-1:]
                   if info.get("seg_map_path") and not osp.isfile(info["seg_map_path"])]
        if missing and not self.test_mode:
            raise FileNotFoundError(f"{type(self).__name__} ({self.domain}): label file '{missing[0]}' is missing; "
                                    f"is the conversion complete? ({self.PREPARE_HINT}).")
        # The ends only, as above (a header read per file would slow start-up on network storage); LabelSizeCheckHook
        # checks every label map as its batch comes.
        for info in data_list[:1] + data_list[-1:]:
            if info.get("seg_map_path"):
                check_label_channels(info["seg_map_path"], f"{type(self).__name__} ({self.domain}): ",
                                     self.PREPARE_HINT)
        return data_list

    def resolve_label_path(self, info: dict) -> dict:
        """Hook for layouts whose label names are not ``<image name><seg_map_suffix>`` (e.g. UrbanSyn)."""
        return info


@DATASETS.register_module()
class DGCityscapesDataset(DGSegDataset):
    """Cityscapes (``leftImg8bit``/``gtFine`` with ``*_gtFine_labelTrainIds.png``); also the demo's layout."""

    DOMAIN = "citys"
    PREPARE_HINT = "run tools/convert_datasets/cityscapes.py to make the *_labelTrainIds.png files"

    def __init__(self, img_suffix: str = "_leftImg8bit.png", seg_map_suffix: str = "_gtFine_labelTrainIds.png",
                 **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
