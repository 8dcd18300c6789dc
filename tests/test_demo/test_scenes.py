"""The demo's scene generator: deterministic, valid trainId label PNGs in the Cityscapes layout."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from soma.datasets import DGCityscapesDataset
from soma.demo.scenes import SCENE_CLASSES, STYLES, make_layout, render, write_dataset


def digest(root) -> str:
    files = sorted(p for p in root.rglob("*.png"))
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_files(tmp_path):
    first = write_dataset(tmp_path / "a", num_train=4, num_val=3, seed=1)
    second = write_dataset(tmp_path / "b", num_train=4, num_val=3, seed=1)
    other = write_dataset(tmp_path / "c", num_train=4, num_val=3, seed=2)
    assert digest(first) == digest(second) != digest(other)


def test_layout_and_labels(tmp_path):
    root = write_dataset(tmp_path, num_train=4, num_val=3)
    assert len(list((root / "source/leftImg8bit/train/demo").glob("*_leftImg8bit.png"))) == 4
    for style in STYLES:
        labels = sorted((root / style / "gtFine/val/demo").glob("*_gtFine_labelTrainIds.png"))
        assert len(labels) == 3
        label = cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.ndim == 2 and label.shape == (64, 64)
        assert set(np.unique(label)) <= set(SCENE_CLASSES)
    # Target styles share the source's validation labels: only the look changes.
    source = cv2.imread(str(root / "source/gtFine/val/demo/scene_0000_gtFine_labelTrainIds.png"), -1)
    night = cv2.imread(str(root / "night/gtFine/val/demo/scene_0000_gtFine_labelTrainIds.png"), -1)
    assert (source == night).all()
    # The registered dataset class reads the layout, and says which domain each sample is from.
    dataset = DGCityscapesDataset(domain="night", data_root=str(root / "night"), test_mode=True,
                                  data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"))
    assert len(dataset) == 3 and dataset.get_data_info(0)["domain"] == "night"


def test_rewrite_is_skipped(tmp_path):
    root = write_dataset(tmp_path, num_train=2, num_val=1)
    image = root / "source/leftImg8bit/train/demo/scene_0000_leftImg8bit.png"
    mtime = image.stat().st_mtime_ns
    write_dataset(tmp_path, num_train=2, num_val=1)
    assert image.stat().st_mtime_ns == mtime


def test_styles_differ_and_scenes_are_plausible():
    rng = np.random.default_rng(0)
    counts = np.zeros(256)
    for _ in range(50):
        label = make_layout(rng)
        counts += np.bincount(label.ravel(), minlength=256)
    assert all(counts[c] > 0 for c in SCENE_CLASSES)  # every class occurs
    label = make_layout(np.random.default_rng(3))
    images = {style: render(label, style, np.random.default_rng(0)).astype(float) for style in STYLES}
    assert images["night"].mean() < 0.6 * images["source"].mean()
    assert images["fog"].std() < images["source"].std()
    assert np.abs(images["palette"] - images["source"]).mean() > 20
    with pytest.raises(ValueError, match="unknown style"):
        render(label, "sunset", rng)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        DGCityscapesDataset(data_root=str(tmp_path), data_prefix=dict(img_path="leftImg8bit/val",
                                                                      seg_map_path="gtFine/val"))
