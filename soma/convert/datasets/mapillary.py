"""Map Mapillary Vistas v1.2 labels (65 classes) to the 19 Cityscapes trainIds and halve images and labels.

    python tools/convert_datasets/mapillary.py data/mapillary [--split validation training] [--nproc 8]

Reads ``ROOT/<split>/images/<stem>.jpg`` and ``ROOT/<split>/v1.2/labels/<stem>.png`` (palette PNGs of v1.2 class
ids) and writes, at half the width and height,

* ``ROOT/half/val_img/<stem>.png`` and ``ROOT/half/val_label/<stem>.png`` (trainIds) for ``validation`` (default),
* ``ROOT/half/train_img/<stem>.png`` and ``ROOT/half/train_label/<stem>.png`` for ``training``.

Images are averaged over 2×2 pixels (``cv2.INTER_AREA``) and stored losslessly as PNG; labels take the nearest
pixel. The 65 → 19 mapping is the one Rein (tools/convert_datasets/mapillary2cityscape.py ``--train_id``, taken
from openseg.pytorch) derives from the class names of ``config_v1.2.json``, which SoMA's evaluation uses; it is
written out below by class id. When ``ROOT/config_v1.2.json`` is present its class names are checked against it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2

from .common import (IGNORE_INDEX, LayoutError, Summary, Task, build_lut, build_parser, read_image, read_label_ids,
                     remap, require_dir, require_files, run_cli, run_tasks, write_png)

DATASET = "Mapillary"
DOWNLOAD = "https://www.mapillary.com/dataset/vistas (Vistas v1.2/v2.0 archive)"
VERSION = "v1.2"
SPLIT_OUTPUTS = {"validation": ("val_img", "val_label"), "training": ("train_img", "train_label")}
IGN = IGNORE_INDEX  # short for the table below
# (readable name in config_v1.2.json, Cityscapes trainId) by v1.2 class id. Rein's rules on the lower-cased name
# without spaces/hyphens: an exact Cityscapes class name; "trafficsign"/"front"/"back" → traffic sign; "onrail" →
# train; "cyclist"/"rider" → rider; "pole"/"streetlight" → pole; "curb"/"pedestrianarea" → sidewalk;
# crosswalk-plain, parking, bike lane, service lane, lane markings → road; everything else → 255.
MAPILLARY_V12_CLASSES: tuple[tuple[str, int], ...] = (
    ("Bird", IGN), ("Ground Animal", IGN), ("Curb", 1), ("Fence", 4), ("Guard Rail", IGN),  # 0-4
    ("Barrier", IGN), ("Wall", 3), ("Bike Lane", 0), ("Crosswalk - Plain", 0), ("Curb Cut", 1),  # 5-9
    ("Parking", 0), ("Pedestrian Area", 1), ("Rail Track", IGN), ("Road", 0), ("Service Lane", 0),  # 10-14
    ("Sidewalk", 1), ("Bridge", IGN), ("Building", 2), ("Tunnel", IGN), ("Person", 11),  # 15-19
    ("Bicyclist", 12), ("Motorcyclist", 12), ("Other Rider", 12), ("Lane Marking - Crosswalk", 0),  # 20-23
    ("Lane Marking - General", 0), ("Mountain", IGN), ("Sand", IGN), ("Sky", 10), ("Snow", IGN),  # 24-28
    ("Terrain", 9), ("Vegetation", 8), ("Water", IGN), ("Banner", IGN), ("Bench", IGN),  # 29-33
    ("Bike Rack", IGN), ("Billboard", IGN), ("Catch Basin", IGN), ("CCTV Camera", IGN),  # 34-37
    ("Fire Hydrant", IGN), ("Junction Box", IGN), ("Mailbox", IGN), ("Manhole", IGN),  # 38-41
    ("Phone Booth", IGN), ("Pothole", IGN), ("Street Light", 5), ("Pole", 5),  # 42-45
    ("Traffic Sign Frame", 7), ("Utility Pole", 5), ("Traffic Light", 6), ("Traffic Sign (Back)", 7),  # 46-49
    ("Traffic Sign (Front)", 7), ("Trash Can", IGN), ("Bicycle", 18), ("Boat", IGN), ("Bus", 15),  # 50-54
    ("Car", 13), ("Caravan", IGN), ("Motorcycle", 17), ("On Rails", 16), ("Other Vehicle", IGN),  # 55-59
    ("Trailer", IGN), ("Truck", 14), ("Wheeled Slow", IGN), ("Car Mount", IGN), ("Ego Vehicle", IGN),  # 60-64
    ("Unlabeled", IGN),  # 65
)
MAPILLARY_LUT = build_lut({i: train_id for i, (_name, train_id) in enumerate(MAPILLARY_V12_CLASSES)})
MAX_ID = len(MAPILLARY_V12_CLASSES) - 1  # 65, "Unlabeled"


def check_config(root: Path) -> None:
    """Check our class table against ``root/config_v1.2.json`` when the dataset ships it.

    Raises:
        ValueError: the config's class names differ from the v1.2 names the mapping is written for.
    """
    config = root / f"config_{VERSION}.json"
    if not config.is_file():
        return
    names = [label.get("readable") for label in json.loads(config.read_text())["labels"]]
    ours = [name for name, _train_id in MAPILLARY_V12_CLASSES]
    if names != ours:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(names, ours)) if a != b][:5]
        raise ValueError(f"'{config}' lists {len(names)} classes that differ from the {len(ours)} v1.2 classes "
                         f"this converter maps (first differences (id, config, ours): {diff}).")


def _convert_pair(task: Task) -> None:
    (image_path, label_path), (image_out, label_out) = task.sources, task.outputs
    image, ids = read_image(image_path), read_label_ids(label_path)
    if image.shape[:2] != ids.shape:
        raise ValueError(f"'{image_path}' is {image.shape[1]}×{image.shape[0]} but its label '{label_path}' is "
                         f"{ids.shape[1]}×{ids.shape[0]}.")
    if ids.max() > MAX_ID:
        raise ValueError(f"Mapillary label '{label_path}' holds ids up to {ids.max()}; {VERSION} labels have ids "
                         f"0–{MAX_ID} (v2.0 labels, with 124 classes, are not supported).")
    size = (image.shape[1] // 2, image.shape[0] // 2)  # cv2 wants (width, height)
    write_png(image_out, cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    write_png(label_out, cv2.resize(remap(ids, MAPILLARY_LUT), size, interpolation=cv2.INTER_NEAREST))


def convert_mapillary(root: str | Path, split: Sequence[str] = ("validation",), nproc: int = 1) -> Summary:
    """Write half-resolution images and trainId labels of the given Mapillary splits under ``root/half``.

    Args:
        root: the Mapillary Vistas folder as distributed (``validation/images``, ``validation/v1.2/labels``, ...).
        split: ``"validation"`` and/or ``"training"``.
        nproc: worker processes.

    Returns:
        How many image/label pairs were converted and how many were already done.

    Raises:
        LayoutError: an images or labels folder is missing or empty, or an image has no label.
        ValueError: an unknown split, a label that is not an 8-bit v1.2 id map, or sizes that differ.
    """
    root = Path(root)
    unknown = sorted(set(split) - set(SPLIT_OUTPUTS))
    if unknown:
        raise ValueError(f"`split` must be among {tuple(SPLIT_OUTPUTS)}, got {unknown}.")
    check_config(root)
    tasks = []
    for name in split:
        images = require_files(root / name / "images", ".jpg", f"{DATASET} {name} images", DOWNLOAD)
        label_dir = require_dir(root / name / VERSION / "labels", f"{DATASET} {name} {VERSION} labels", DOWNLOAD)
        missing = [p.name for p in images if not (label_dir / f"{p.stem}.png").is_file()]
        if missing:
            raise LayoutError(f"{len(missing)} {DATASET} {name} images have no label <stem>.png in {label_dir}, "
                              f"e.g. {missing[:3]}.")
        img_dir, lbl_dir = (root / "half" / sub for sub in SPLIT_OUTPUTS[name])
        tasks += [Task((p, label_dir / f"{p.stem}.png"), (img_dir / f"{p.stem}.png", lbl_dir / f"{p.stem}.png"))
                  for p in images]
    return run_tasks(DATASET, tasks, _convert_pair, nproc)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = build_parser(__doc__.splitlines()[0], "Mapillary Vistas folder with validation/ (and training/)")
    parser.add_argument("--split", nargs="+", choices=tuple(SPLIT_OUTPUTS), default=["validation"],
                        help="splits to convert (default: validation)")
    return run_cli(convert_mapillary, parser, argv)

