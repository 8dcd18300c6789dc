"""Check ACDC's trainId labels, writing them from the label ids where they are missing.

    python tools/convert_datasets/acdc.py data/acdc [--condition fog night rain snow] [--split train val test]

Reads ``ROOT/rgb_anon/<cond>/<split>/<seq>/*_rgb_anon.png`` (checked to exist) and
``ROOT/gt/<cond>/<split>/<seq>/*_gt_labelIds.png`` for the train and val splits. ACDC ships
``*_gt_labelTrainIds.png`` as well: where present they are only validated (trainIds 0–18 and 255); where only the
label ids exist, ``*_gt_labelTrainIds.png`` is written next to them through cityscapesscripts' table. The test split
has no public labels, so for it only the images' layout is checked.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import (LayoutError, Summary, Task, build_parser, check_train_ids, list_files, read_label_ids,
                     replace_suffix, require_dir, require_files, run_cli, run_tasks, write_cityscapes_train_ids)

DATASET = "ACDC"
DOWNLOAD = "https://acdc.vision.ee.ethz.ch/download (rgb_anon_trainvaltest.zip, gt_trainval.zip)"
CONDITIONS = ("fog", "night", "rain", "snow")
SPLITS = ("train", "val", "test")
LABELED_SPLITS = ("train", "val")
IMAGE = "_rgb_anon.png"
LABEL_IDS = "_gt_labelIds.png"
TRAIN_IDS = "_gt_labelTrainIds.png"


def _validate_train_ids(task: Task) -> None:
    (labels,) = task.outputs
    check_train_ids(read_label_ids(labels), labels)


def _label_tasks(gt_dir: Path) -> list[Task]:
    """A task per frame of ``gt_dir`` (ACDC labels ``<seq>/<frame>_gt_*``): its trainId label is the output."""
    ids = {replace_suffix(p, LABEL_IDS, TRAIN_IDS): p for p in list_files(gt_dir, LABEL_IDS, recursive=True)}
    train_ids = list_files(gt_dir, TRAIN_IDS, recursive=True)
    # A frame shipped with trainIds only has no source: it is done, and only gets validated.
    return [Task((ids[out],) if out in ids else (), (out,)) for out in sorted(set(ids) | set(train_ids))]


def convert_acdc(root: str | Path, condition: Sequence[str] = CONDITIONS, split: Sequence[str] = SPLITS,
                 nproc: int = 1) -> Summary:
    """Validate or write ``*_gt_labelTrainIds.png`` for the labelled splits; check the test images are there.

    Args:
        root: the ACDC folder as distributed (``rgb_anon/``, ``gt/``).
        condition: the conditions to prepare.
        split: the splits to prepare (``test`` is only checked).
        nproc: worker processes.

    Returns:
        How many labels were written and how many existed (and were validated).

    Raises:
        LayoutError: a condition/split folder of ``rgb_anon`` or ``gt`` is missing or empty.
        ValueError: an unknown condition or split, a label that is not an 8-bit id map, or a shipped trainId label
            with values other than 0–18 and 255.
    """
    root = Path(root)
    for name, given, allowed in (("condition", condition, CONDITIONS), ("split", split, SPLITS)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(f"`{name}` must be among {allowed}, got {unknown}.")
    tasks = []
    for cond in condition:
        for name in split:
            require_files(root / "rgb_anon" / cond / name, IMAGE, f"{DATASET} {cond} {name} images "
                          f"(<seq>/*{IMAGE})", DOWNLOAD, recursive=True)
            if name not in LABELED_SPLITS:
                continue
            gt_dir = require_dir(root / "gt" / cond / name, f"{DATASET} {cond} {name} labels (<seq>/*{LABEL_IDS})",
                                 DOWNLOAD)
            found = _label_tasks(gt_dir)
            if not found:
                raise LayoutError(f"expected {DATASET} {cond} {name} labels (<seq>/*{LABEL_IDS} or *{TRAIN_IDS}) "
                                  f"under {gt_dir} (download from {DOWNLOAD}); found none.")
            tasks += found
    return run_tasks(DATASET, tasks, write_cityscapes_train_ids, nproc, validate_done=_validate_train_ids)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = build_parser(__doc__.splitlines()[0], "ACDC folder with rgb_anon/ and gt/, e.g. data/acdc")
    parser.add_argument("--condition", nargs="+", choices=CONDITIONS, default=list(CONDITIONS),
                        help="conditions to prepare (default: all four)")
    parser.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="splits to prepare (default: train val test; test is only checked)")
    return run_cli(convert_acdc, parser, argv)

