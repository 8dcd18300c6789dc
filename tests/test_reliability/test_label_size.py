"""A label map of another size than its image is refused with both files named, before the loss or metric
(it failed deep in Mask2Former's loss with `IndexError: The shape of the mask [1024] ...`)."""
from __future__ import annotations

import numpy as np
import pytest
from mmseg.structures import SegDataSample
from PIL import Image

from soma.engine import LabelSizeCheckHook
from soma.utils import DataError


def batch(image, label):
    sample = SegDataSample(metainfo=dict(img_path=str(image), seg_map_path=str(label)))
    return dict(inputs=[], data_samples=[sample])


def test_label_map_of_another_size_is_refused_with_the_files(tmp_path):
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(tmp_path / "a_label.png")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "b_label.png")
    hook = LabelSizeCheckHook()
    hook.before_train_iter(None, 0, batch(tmp_path / "a.png", tmp_path / "a_label.png"))  # same size: fine
    with pytest.raises(DataError, match=r"label map '.*b_label.png' is 32x16 but its image '.*a.png' is 64x32"):
        hook.before_train_iter(None, 0, batch(tmp_path / "a.png", tmp_path / "b_label.png"))
    with pytest.raises(DataError, match="b_label.png"):
        hook.before_test_iter(None, 0, batch(tmp_path / "a.png", tmp_path / "b_label.png"))


def test_colour_label_map_is_refused_with_the_file(tmp_path):
    """The datasets check the ends of their list when built; the hook checks every label map as it comes."""
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(tmp_path / "a_color.png")
    hook = LabelSizeCheckHook()
    with pytest.raises(DataError, match=r"label map '.*a_color.png' has 3 channels \(mode RGB\)"):
        hook.before_test_iter(None, 0, batch(tmp_path / "a.png", tmp_path / "a_color.png"))
