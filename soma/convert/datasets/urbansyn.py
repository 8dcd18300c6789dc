"""Check UrbanSyn labels (already Cityscapes trainIds) and write them with 255 as the ignore index.

    python tools/convert_datasets/urbansyn.py data/urbansyn [--nproc 8]

Reads ``ROOT/rgb/`` (checked to exist) and ``ROOT/ss/ss_XXXX.png`` and writes ``ROOT/ss/ss_XXXX_labelTrainIds.png``.

UrbanSyn's ``ss`` folder holds 8-bit grey PNGs whose value is the Cityscapes *trainId* (its dataset card: "value =
Class ID", "we follow the 19 training classes defined on Cityscapes"), with 19 for unlabelled pixels; SoMA's
released ``tools/convert_datasets/urbansyn.py`` likewise only rewrites 19 → 255. So the conversion is: 0–18 kept,
19 → 255, 255 kept; any other value means the file is not an UrbanSyn ``ss`` label and is refused, as are the
colour images of ``ss_colour``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .common import (IGNORE_INDEX, NUM_CLASSES, TRAIN_ID_SUFFIX, Summary, Task, build_lut, build_parser, read_label_ids,
                     remap, require_dir, require_files, run_cli, run_tasks, train_id_tasks, write_png)

DATASET = "UrbanSyn"
DOWNLOAD = "https://www.urbansyn.org (rgb and ss packages)"
UNLABELED = 19  # UrbanSyn's value for pixels of no train class
URBANSYN_LUT = build_lut({**{i: i for i in range(NUM_CLASSES)}, UNLABELED: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX})


def _convert_label(task: Task) -> None:
    (label,), (out,) = task.sources, task.outputs
    ids = read_label_ids(label)
    bad = np.setdiff1d(np.unique(ids), [*range(NUM_CLASSES), UNLABELED, IGNORE_INDEX])
    if bad.size:
        raise ValueError(f"UrbanSyn label '{label}' holds values {bad[:10].tolist()}; the ss labels hold "
                         f"Cityscapes trainIds 0–{NUM_CLASSES - 1} and {UNLABELED} (unlabelled).")
    write_png(out, remap(ids, URBANSYN_LUT))


def convert_urbansyn(root: str | Path, nproc: int = 1) -> Summary:
    """Write ``ss/ss_XXXX_labelTrainIds.png`` for every UrbanSyn label under ``root``.

    Args:
        root: the UrbanSyn folder as distributed (``rgb/``, ``ss/``).
        nproc: worker processes.

    Returns:
        How many labels were converted and how many were already done.

    Raises:
        LayoutError: ``rgb/`` or ``ss/`` is missing, or ``ss/`` has no ``ss_*.png``.
        ValueError: a label is not an 8-bit trainId map (colour image, values beyond 19).
    """
    root = Path(root)
    require_dir(root / "rgb", f"{DATASET} images", DOWNLOAD)
    labels = [p for p in require_files(root / "ss", ".png", f"{DATASET} semantic labels ss_XXXX", DOWNLOAD,
                                       exclude_suffix=TRAIN_ID_SUFFIX) if p.name.startswith("ss_")]
    return run_tasks(DATASET, train_id_tasks(labels), _convert_label, nproc)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = build_parser(__doc__.splitlines()[0], "UrbanSyn folder with rgb/ and ss/, e.g. data/urbansyn")
    return run_cli(convert_urbansyn, parser, argv)

