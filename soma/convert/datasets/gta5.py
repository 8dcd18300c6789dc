"""Convert GTA5 labels (Cityscapes label ids) to Cityscapes trainIds.

    python tools/convert_datasets/gta5.py data/gta [--nproc 8]

Reads ``ROOT/images/*.png`` (checked to exist) and ``ROOT/labels/*.png``, and writes
``ROOT/labels/<stem>_labelTrainIds.png`` (trainIds 0–18, 255 = ignore) next to each label. GTA5 labels hold
Cityscapes label ids; many are palette PNGs whose palette shows the Cityscapes colours, so the raw palette indices
are read, never the colours. The id → trainId table is cityscapesscripts'. Ids it does not know become 255.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import (TRAIN_ID_SUFFIX, Summary, build_parser, require_dir, require_files, run_cli, run_tasks,
                     train_id_tasks, write_cityscapes_train_ids)

DATASET = "GTA5"
DOWNLOAD = "https://download.visinf.tu-darmstadt.de/data/from_games/"


def convert_gta5(root: str | Path, nproc: int = 1) -> Summary:
    """Write ``labels/<stem>_labelTrainIds.png`` for every GTA5 label under ``root``.

    Args:
        root: the GTA5 folder as distributed (``images/``, ``labels/``).
        nproc: worker processes.

    Returns:
        How many labels were converted and how many were already done.

    Raises:
        LayoutError: ``images/`` or ``labels/`` is missing, or ``labels/`` has no label PNG.
        ValueError: a label is not an 8-bit id map (e.g. an RGB colour image).
    """
    root = Path(root)
    require_dir(root / "images", f"{DATASET} images", DOWNLOAD)
    labels = require_files(root / "labels", ".png", f"{DATASET} labels (Cityscapes label ids)", DOWNLOAD,
                           exclude_suffix=TRAIN_ID_SUFFIX)
    return run_tasks(DATASET, train_id_tasks(labels), write_cityscapes_train_ids, nproc)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = build_parser(__doc__.splitlines()[0], "GTA5 folder with images/ and labels/, e.g. data/gta")
    return run_cli(convert_gta5, parser, argv)

