"""Convert SYNTHIA (RAND-CITYSCAPES) labels to Cityscapes trainIds.

    python tools/convert_datasets/synthia.py data/synthia [--nproc 8]

Reads ``ROOT/RGB/*.png`` (checked to exist) and ``ROOT/GT/LABELS/*.png`` and writes
``ROOT/GT/LABELS/<stem>_labelTrainIds.png`` (8-bit; trainIds 0–18, 255 = ignore).

SYNTHIA labels are 16-bit PNGs with 3 channels: the class id in the first (R) channel, the instance id in the
second. OpenCV reads them unchanged in BGR order, so the class id is the *last* channel of the array; this is
also how DAFormer's and SoMA's ``tools/convert_datasets/synthia.py`` read it (``cv2.IMREAD_UNCHANGED``,
``[:, :, -1]``). PIL cannot read 16-bit colour PNGs, hence OpenCV here.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .common import (TRAIN_ID_SUFFIX, Summary, Task, build_lut, build_parser, read_image, remap, require_dir,
                     require_files, run_cli, run_tasks, train_id_tasks, write_png)

DATASET = "SYNTHIA"
DOWNLOAD = "http://synthia-dataset.net/downloads/ (SYNTHIA-RAND-CITYSCAPES)"

# SYNTHIA class id → Cityscapes trainId for the 16 classes both have. Class ids are those of the
# RAND-CITYSCAPES README (0 void … 22 lanemarking); the pairs are the ones DAFormer's converter uses. DAFormer also
# lists terrain (16 → 9), truck (18 → 14) and train (20 → 16), which have no pixels in RAND-CITYSCAPES; they are
# left out so that SYNTHIA never produces those trainIds (the 16-class protocol). Void, parking-slot (13),
# road-work (14) and lanemarking (22) → 255 as well.
SYNTHIA_TO_TRAIN_ID = {
    1: 10,   # sky
    2: 2,    # building
    3: 0,    # road
    4: 1,    # sidewalk
    5: 4,    # fence
    6: 8,    # vegetation
    7: 5,    # pole
    8: 13,   # car
    9: 7,    # traffic sign
    10: 11,  # pedestrian → person
    11: 18,  # bicycle
    12: 17,  # motorcycle
    15: 6,   # traffic light
    17: 12,  # rider
    19: 15,  # bus
    21: 3,   # wall
}
SYNTHIA_LUT = build_lut(SYNTHIA_TO_TRAIN_ID)


def read_synthia_ids(path: Path) -> np.ndarray:
    """The class ids (the PNG's first channel) of a 16-bit 3-channel SYNTHIA label.

    Raises:
        ValueError: the file is not a 16-bit 3-channel PNG (e.g. an 8-bit or already converted label).
    """
    label = read_image(path, cv2.IMREAD_UNCHANGED)
    if label.ndim != 3 or label.shape[2] != 3 or label.dtype != np.uint16:
        depth = 8 * label.dtype.itemsize
        channels = 1 if label.ndim == 2 else label.shape[2]
        raise ValueError(f"SYNTHIA label '{path}' has {channels} channel{'s' * (channels > 1)} of {depth} bits; "
                         "expected the 16-bit 3-channel labels of RAND-CITYSCAPES GT/LABELS (class id in the first "
                         "channel).")
    return label[:, :, 2]  # BGR order: index 2 is the file's first (R) channel


def _convert_label(task: Task) -> None:
    (label,), (out,) = task.sources, task.outputs
    write_png(out, remap(read_synthia_ids(label), SYNTHIA_LUT))


def convert_synthia(root: str | Path, nproc: int = 1) -> Summary:
    """Write ``GT/LABELS/<stem>_labelTrainIds.png`` for every SYNTHIA label under ``root``.

    Args:
        root: the RAND-CITYSCAPES folder as distributed (``RGB/``, ``GT/LABELS/``).
        nproc: worker processes.

    Returns:
        How many labels were converted and how many were already done.

    Raises:
        LayoutError: ``RGB/`` or ``GT/LABELS/`` is missing or has no PNG.
        ValueError: a label is not a 16-bit 3-channel PNG.
    """
    root = Path(root)
    require_dir(root / "RGB", f"{DATASET} RAND-CITYSCAPES images", DOWNLOAD)
    labels = require_files(root / "GT" / "LABELS", ".png", f"{DATASET} 16-bit labels", DOWNLOAD,
                           exclude_suffix=TRAIN_ID_SUFFIX)
    return run_tasks(DATASET, train_id_tasks(labels), _convert_label, nproc)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = build_parser(__doc__.splitlines()[0], "SYNTHIA RAND-CITYSCAPES folder with RGB/ and GT/LABELS/")
    return run_cli(convert_synthia, parser, argv)

