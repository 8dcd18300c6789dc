"""Each benchmark dataset class reads a tiny generated copy of its real layout and names its domain."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from soma.datasets import (
    DGACDCDataset,
    DGBDD100KDataset,
    DGCityscapesDataset,
    DGGTA5Dataset,
    DGMapillaryDataset,
    DGSynthiaDataset,
    DGUrbanSynDataset,
)
from soma.utils import DataError

PIPELINE = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")]


def write_pair(image: Path, label: Path | None, value: int) -> None:
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 12, 3), value, np.uint8)).save(image)
    if label is not None:
        label.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 12), value % 19, np.uint8)).save(label)


# Per dataset: the class, its build kwargs, and (image, label) paths relative to data_root, as distributed and
# converted (labels next to raw ones that the class must not pick up).
LAYOUTS = {
    "gta": (DGGTA5Dataset, {}, [("images/00001.png", "labels/00001_labelTrainIds.png"),
                                ("images/00002.png", "labels/00002_labelTrainIds.png")]),
    "synthia": (DGSynthiaDataset, {}, [("RGB/0000000.png", "GT/LABELS/0000000_labelTrainIds.png")]),
    "urbansyn": (DGUrbanSynDataset, {}, [("rgb/rgb_0001.png", "ss/ss_0001_labelTrainIds.png"),
                                         ("rgb/rgb_0002.png", "ss/ss_0002_labelTrainIds.png")]),
    "citys": (DGCityscapesDataset, dict(data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val")),
              [("leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png",
                "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")]),
    "bdd": (DGBDD100KDataset, {}, [("images/10k/val/7d06fefd-f7be05a6.jpg",
                                    "labels/sem_seg/masks/val/7d06fefd-f7be05a6.png")]),
    "map": (DGMapillaryDataset, {}, [("half/val_img/_1Gn_xkw7sa_i9GU4mkxxQ.png",
                                      "half/val_label/_1Gn_xkw7sa_i9GU4mkxxQ.png")]),
    "acdc-night": (DGACDCDataset, dict(condition="night"),
                   [("rgb_anon/night/val/GOPR0355/GOPR0355_frame_000138_rgb_anon.png",
                     "gt/night/val/GOPR0355/GOPR0355_frame_000138_gt_labelTrainIds.png")]),
}


@pytest.mark.parametrize("domain", list(LAYOUTS))
def test_reads_its_layout_and_names_its_domain(tmp_path, domain):
    cls, kwargs, pairs = LAYOUTS[domain]
    for index, (image, label) in enumerate(pairs):
        write_pair(tmp_path / image, tmp_path / label, value=10 * index + 3)
    # raw label files of the distributed layout (not trainIds) must not be read as images or labels
    (tmp_path / "labels").mkdir(exist_ok=True)
    Image.fromarray(np.full((8, 12), 33, np.uint8)).save(tmp_path / "labels" / "00001.png")
    dataset = cls(data_root=str(tmp_path), pipeline=PIPELINE, **kwargs)
    assert len(dataset) == len(pairs) and dataset.domain == domain
    for index, (image, label) in enumerate(pairs):
        info = dataset.get_data_info(index)
        assert info["domain"] == domain
        assert Path(info["img_path"]) == tmp_path / image and Path(info["seg_map_path"]) == tmp_path / label
    sample = dataset[0]
    assert sample["gt_seg_map"].shape == (8, 12) and sample["gt_seg_map"].max() < 19
    assert len(dataset.metainfo["classes"]) == 19


def test_domain_can_be_renamed(tmp_path):
    write_pair(tmp_path / "images/1.png", tmp_path / "labels/1_labelTrainIds.png", 1)
    assert DGGTA5Dataset(data_root=str(tmp_path), domain="gta-val").get_data_info(0)["domain"] == "gta-val"
    with pytest.raises(ValueError, match="without '/'"):
        DGGTA5Dataset(data_root=str(tmp_path), domain="gta/val")


def test_missing_folder_names_it_and_the_converter(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image folder '.*/gta/images' does not exist.*gta5\.py"):
        DGGTA5Dataset(data_root=str(tmp_path / "gta"))
    write_pair(tmp_path / "synthia/RGB/1.png", None, 1)
    (tmp_path / "synthia/GT/LABELS").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"label file .*1_labelTrainIds.png' is missing.*synthia\.py"):
        DGSynthiaDataset(data_root=str(tmp_path / "synthia"))
    (tmp_path / "empty/half/val_img").mkdir(parents=True)
    (tmp_path / "empty/half/val_label").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no '\*\.png' images"):
        DGMapillaryDataset(data_root=str(tmp_path / "empty"))


def test_acdc_conditions_splits_and_unlabelled_test(tmp_path):
    for condition in ("fog", "snow"):
        write_pair(tmp_path / f"rgb_anon/{condition}/val/GP01/GP01_frame_000001_rgb_anon.png",
                   tmp_path / f"gt/{condition}/val/GP01/GP01_frame_000001_gt_labelTrainIds.png", 2)
    write_pair(tmp_path / "rgb_anon/fog/test/GP02/GP02_frame_000007_rgb_anon.png", None, 2)
    fog = DGACDCDataset(condition="fog", data_root=str(tmp_path))
    assert len(fog) == 1 and fog.domain == "acdc-fog" and "/fog/val/" in fog.get_data_info(0)["img_path"]
    test = DGACDCDataset(condition="fog", split="test", data_root=str(tmp_path), test_mode=True)
    assert len(test) == 1 and "seg_map_path" not in test.get_data_info(0)
    with pytest.raises(ValueError, match="condition"):
        DGACDCDataset(condition="haze", data_root=str(tmp_path))


def test_fixed_random_subset(tmp_path):
    for index in range(32):
        write_pair(tmp_path / f"images/{index:03d}.png", tmp_path / f"labels/{index:03d}_labelTrainIds.png", index)
    names = [[Path(info["img_path"]).name for info in DGGTA5Dataset(data_root=str(tmp_path), subset_ratio=1 / 16,
                                                                    subset_seed=seed).load_data_list()]
             for seed in (0, 0, 1)]
    assert len(names[0]) == 2 and names[0] == names[1] and names[0] != names[2]
    with pytest.raises(ValueError, match="subset_ratio"):
        DGGTA5Dataset(data_root=str(tmp_path), subset_ratio=0)


def test_colour_label_maps_are_refused_when_the_dataset_is_built(tmp_path):
    """A 3-channel label map loads as (H, W, 3) and used to fail in the metric with a traceback naming no file."""
    cls, kwargs, ((image, label),) = LAYOUTS["citys"]
    write_pair(tmp_path / image, None, 3)
    (tmp_path / label).parent.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / label)  # a colour map under the trainId name
    for test_mode in (True, False):
        with pytest.raises(DataError, match=rf"label map '.*{Path(label).name}' has 3 channels \(mode RGB\) but a "
                                            r"label map has one.*cityscapes\.py"):
            cls(data_root=str(tmp_path), pipeline=PIPELINE, test_mode=test_mode, **kwargs)
    Image.fromarray(np.zeros((8, 12), np.uint8)).convert("P").save(tmp_path / label)  # a palette map: one channel
    assert len(cls(data_root=str(tmp_path), pipeline=PIPELINE, test_mode=True, **kwargs)) == 1
