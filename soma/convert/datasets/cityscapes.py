"""Write Cityscapes ``*_gtFine_labelTrainIds.png`` from the shipped ``*_gtFine_labelIds.png``.

    python tools/convert_datasets/cityscapes.py data/cityscapes [--split train val] [--nproc 8]

Reads ``ROOT/leftImg8bit/<split>/`` (checked to exist) and ``ROOT/gtFine/<split>/<city>/*_gtFine_labelIds.png``
and writes ``ROOT/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` next to them, mapping label ids through
cityscapesscripts' table. This gives the same files as cityscapesscripts' ``createTrainIdLabelImgs`` (which
redraws every polygon json) in a fraction of the time.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import (LayoutError, Summary, Task, build_parser, list_files, replace_suffix, require_dir, run_cli,
                     run_tasks, write_cityscapes_train_ids)

DATASET = "Cityscapes"
DOWNLOAD = "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)"
LABEL_IDS = "_gtFine_labelIds.png"
TRAIN_IDS = "_gtFine_labelTrainIds.png"
SPLITS = ("train", "val", "test")


def convert_cityscapes(root: str | Path, split: Sequence[str] = ("train", "val"), nproc: int = 1) -> Summary:
    """Write ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png`` of the given splits.

    Args:
        root: the Cityscapes folder as distributed (``leftImg8bit/``, ``gtFine/``).
        split: the splits to convert.
        nproc: worker processes.

    Returns:
        How many labels were converted and how many were already done.

    Raises:
        LayoutError: a split folder is missing or has no labelIds PNG (e.g. only the polygon jsons).
        ValueError: an unknown split, or a label that is not an 8-bit id map.
    """
    root = Path(root)
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise ValueError(f"`split` must be among {SPLITS}, got {unknown}.")
    tasks = []
    for name in split:
        require_dir(root / "leftImg8bit" / name, f"{DATASET} {name} images (<city>/*_leftImg8bit.png)", DOWNLOAD)
        gt_dir = require_dir(root / "gtFine" / name, f"{DATASET} {name} labels (<city>/*{LABEL_IDS})", DOWNLOAD)
        labels = list_files(gt_dir, LABEL_IDS, recursive=True)
        if not labels:
            polygons = list_files(gt_dir, "_gtFine_polygons.json", recursive=True)
            found = f"only {len(polygons)} polygon jsons" if polygons else "none"
            raise LayoutError(f"expected {DATASET} {name} labels (<city>/*{LABEL_IDS}) under {gt_dir} (download "
                              f"from {DOWNLOAD}); found {found}. The labelIds PNGs ship in gtFine_trainvaltest.zip.")
        tasks += [Task((label,), (replace_suffix(label, LABEL_IDS, TRAIN_IDS),)) for label in labels]
    return run_tasks(DATASET, tasks, write_cityscapes_train_ids, nproc)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = build_parser(__doc__.splitlines()[0], "Cityscapes folder with leftImg8bit/ and gtFine/")
    parser.add_argument("--split", nargs="+", choices=SPLITS, default=["train", "val"],
                        help="splits to convert (default: train val)")
    return run_cli(convert_cityscapes, parser, argv)

