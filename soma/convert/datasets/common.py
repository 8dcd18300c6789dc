"""Shared machinery of the dataset converters: layout checks, label reading and remapping, atomic PNG writes.

    python tools/convert_datasets/<dataset>.py ROOT [--nproc N]

A converter lists its work as :class:`Task` objects (input files → output files) and hands them to
:func:`run_tasks`, which

* skips a task whose outputs all exist already (a re-run only does what is missing; the summary says how many it
  skipped), optionally validating those existing outputs first (ACDC's shipped ``*_gt_labelTrainIds.png``);
* writes every output through :func:`soma.utils.atomic_path`, so an interrupted run never leaves a half-written PNG
  under its final name; temporary files of a run that was killed outright (SIGKILL, power loss) are removed by the
  next run before it starts;
* runs in ``--nproc`` processes (``multiprocessing.Pool``) behind a tqdm progress bar and ends with one line
  ``<dataset>: converted X, skipped Y (already done)``.

Label problems (an RGB colour image where class ids are expected, an 8-bit SYNTHIA label, ids out of range) raise
``ValueError`` naming the file; a missing input folder raises :class:`LayoutError` naming the folder and the
download page. The command line prints either as one ``error:`` line and exits with status 1.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from soma.utils.checkpoint import atomic_path
from soma.utils.cli import positive_int

IGNORE_INDEX = 255
NUM_CLASSES = 19  # the Cityscapes train classes every segmentation set is mapped to
TRAIN_ID_SUFFIX = "_labelTrainIds.png"
# Names mkstemp gives atomic_path's temporaries: ".<stem>.<8 random chars>.tmp<suffix>".
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp\.[A-Za-z0-9]+$")


class LayoutError(ValueError):
    """The dataset folder does not have the layout the converter reads (a folder or its files are missing)."""


@dataclass(frozen=True)
class Task:
    """One unit of work: read ``sources``, write ``outputs`` (done when every output exists)."""

    sources: tuple[Path, ...]
    outputs: tuple[Path, ...]


@dataclass(frozen=True)
class Summary:
    """What a run did. ``skipped`` tasks were already done; ``validated`` of them were checked (ACDC)."""

    dataset: str
    converted: int
    skipped: int
    validated: int = 0
    removed_partial: int = 0

    def __str__(self) -> str:
        line = f"{self.dataset}: converted {self.converted}, skipped {self.skipped} (already done)"
        if self.validated:
            line += f"; validated {self.validated} existing trainId labels"
        if self.removed_partial:
            line += f"; removed {self.removed_partial} partial files of an interrupted run"
        return line


# ---------------------------------------------------------------------------------------------------- layout
def require_dir(path: Path, what: str, download: str) -> Path:
    """``path`` if it is a folder.

    Args:
        path: the folder the converter reads.
        what: what it should hold, e.g. ``"GTA5 images"``.
        download: where the dataset comes from (shown in the error).

    Raises:
        LayoutError: ``path`` is not a folder; the message names it and the download page.
    """
    if not path.is_dir():
        raise LayoutError(f"expected {what} in {path} (download from {download}); the folder does not exist.")
    return path


def list_files(folder: Path, suffix: str, recursive: bool = False, exclude_suffix: str | None = None) -> list[Path]:
    """Sorted files of ``folder`` whose name ends with ``suffix``.

    Hidden files are left out: they include the temporaries of :func:`atomic_path`, which must never be taken for
    inputs.

    Args:
        folder: where to look.
        suffix: name ending to match, e.g. ``".png"`` or ``"_gtFine_labelIds.png"``.
        recursive: also look in sub-folders (at any depth).
        exclude_suffix: drop names ending with this (e.g. our own outputs next to the inputs).
    """
    found = folder.rglob(f"*{suffix}") if recursive else folder.glob(f"*{suffix}")
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".")
                  and not (exclude_suffix and p.name.endswith(exclude_suffix)))


def require_files(folder: Path, suffix: str, what: str, download: str, recursive: bool = False,
                  exclude_suffix: str | None = None) -> list[Path]:
    """:func:`list_files`, raising :class:`LayoutError` (naming ``folder``) when nothing matches."""
    files = list_files(require_dir(folder, what, download), suffix, recursive, exclude_suffix)
    if not files:
        where = "under" if recursive else "in"
        raise LayoutError(f"expected {what} (*{suffix}) {where} {folder} (download from {download}); found none.")
    return files


def train_id_tasks(labels: list[Path]) -> list[Task]:
    """One task per label file, writing ``<stem>_labelTrainIds.png`` next to it (GTA5, SYNTHIA, UrbanSyn)."""
    return [Task((label,), (label.with_name(label.stem + TRAIN_ID_SUFFIX),)) for label in labels]


def replace_suffix(path: Path, old: str, new: str) -> Path:
    """``path`` with the name ending ``old`` replaced by ``new`` (``_labelIds.png`` → ``_labelTrainIds.png``)."""
    assert path.name.endswith(old), f"{path} does not end with {old}"
    return path.with_name(path.name[:-len(old)] + new)


# ---------------------------------------------------------------------------------------------------- labels
def build_lut(mapping: Mapping[int, int], size: int = 256) -> np.ndarray:
    """A uint8 lookup table: ``lut[id] = mapping[id]``, every other id → 255 (ignore).

    Raises:
        ValueError: an id outside ``[0, size)`` or a target outside 0–255.
    """
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for src, dst in mapping.items():
        if not 0 <= src < size or not 0 <= dst <= IGNORE_INDEX:
            raise ValueError(f"cannot map id {src} → {dst} in a uint8 table of size {size}.")
        lut[src] = dst
    return lut


def remap(ids: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map a label map of ids through ``lut``; ids beyond the table (e.g. in 16-bit input) become 255."""
    if ids.dtype == np.uint8 and len(lut) >= 256:
        return lut[ids]
    out = np.full(ids.shape, IGNORE_INDEX, dtype=np.uint8)
    known = (ids >= 0) & (ids < len(lut))
    out[known] = lut[ids[known]]
    return out


def cityscapes_id_to_train_id() -> dict[int, int]:
    """Cityscapes label id → trainId from cityscapesscripts' table (the ids with no train class → 255)."""
    from cityscapesscripts.helpers.labels import labels

    # "license plate" has id -1 (never in a labelIds PNG); trainIds -1 and 255 both mean "not trained on".
    return {label.id: label.trainId if 0 <= label.trainId < NUM_CLASSES else IGNORE_INDEX
            for label in labels if label.id >= 0}


CITYSCAPES_LUT = build_lut(cityscapes_id_to_train_id())


def read_label_ids(path: Path) -> np.ndarray:
    """The class ids of an 8-bit single-channel label PNG: grey values, or palette indices for a palette PNG.

    Palette PNGs (GTA5, Mapillary) are read as their indices, never converted to colours.

    Raises:
        ValueError: the file is not a readable image, or holds colours (RGB) or 16-bit values instead of
            8-bit class ids.
    """
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read label '{path}': {exc}") from exc
    if img.mode in ("L", "P"):
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("RGB", "RGBA"):
        raise ValueError(f"label '{path}' is an {img.mode} colour image; expected single-channel class ids "
                         "(an 8-bit grey or palette PNG). Did you point the converter at the colour-coded labels?")
    raise ValueError(f"label '{path}' has PIL mode {img.mode!r}; expected single-channel 8-bit class ids "
                     "(an 8-bit grey or palette PNG).")


def check_train_ids(train_ids: np.ndarray, path: Path) -> None:
    """Check that a label map holds only trainIds 0–18 and 255.

    Raises:
        ValueError: other values occur; the message names the file and the values.
    """
    bad = np.setdiff1d(np.unique(train_ids), [*range(NUM_CLASSES), IGNORE_INDEX])
    if bad.size:
        raise ValueError(f"'{path}' holds values {bad[:10].tolist()} that are not Cityscapes trainIds "
                         f"(0–{NUM_CLASSES - 1}, {IGNORE_INDEX} = ignore).")


# ---------------------------------------------------------------------------------------------------- images
def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """``cv2.imread`` that raises instead of returning ``None``.

    Raises:
        ValueError: the file is missing or not an image OpenCV can decode.
    """
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"cannot read image '{path}' (missing, truncated or not an image).")
    return image


def write_png(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (a uint8 label map, or a BGR image) as a PNG at ``path``, atomically.

    Raises:
        OSError: OpenCV could not write the file (nothing is left under ``path``).
    """
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), array):
            raise OSError(f"OpenCV could not write '{path}'.")



def write_cityscapes_train_ids(task: Task) -> None:
    """Write a task's trainId label from its label-id PNG through cityscapesscripts' table (Cityscapes, GTA5, ACDC)."""
    (label,), (out,) = task.sources, task.outputs
    write_png(out, remap(read_label_ids(label), CITYSCAPES_LUT))

# ---------------------------------------------------------------------------------------------------- running
def remove_partial_files(folders: Iterable[Path]) -> int:
    """Delete :func:`atomic_path` temporaries left in ``folders`` by a killed run; returns how many."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file() and _TEMP_NAME.match(entry.name):
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


def _process(convert: Callable[[Task], None], validate_done: Callable[[Task], None] | None, task: Task) -> str:
    """Run one task in a worker: ``"skipped"``/``"validated"`` when its outputs exist, else ``"converted"``."""
    if all(out.exists() for out in task.outputs):
        if validate_done is None:
            return "skipped"
        validate_done(task)
        return "validated"
    convert(task)
    return "converted"


def run_tasks(dataset: str, tasks: Sequence[Task], convert: Callable[[Task], None], nproc: int = 1,
              validate_done: Callable[[Task], None] | None = None) -> Summary:
    """Do the tasks that are not done yet, in ``nproc`` processes, with a progress bar; print the summary line.

    Args:
        dataset: name for the progress bar and the summary.
        tasks: the work; a task whose outputs all exist is skipped.
        convert: does one task; must write every output through :func:`write_png` (atomic). A module-level
            function, so that worker processes can receive it.
        nproc: worker processes; 1 runs in this process.
        validate_done: called for skipped tasks (e.g. to check labels that shipped with the dataset).

    Returns:
        The counts, also printed as ``<dataset>: converted X, skipped Y (already done)``.

    Raises:
        ValueError: ``nproc`` < 1, or what ``convert``/``validate_done`` raise (the run stops; temporaries of
            unfinished outputs are removed).
    """
    if nproc < 1:
        raise ValueError(f"`nproc` must be a positive int, got {nproc}.")
    out_dirs = sorted({out.parent for task in tasks for out in task.outputs})
    removed = remove_partial_files(out_dirs)
    worker = functools.partial(_process, convert, validate_done)
    counts = {"converted": 0, "skipped": 0, "validated": 0}
    try:
        with tqdm(total=len(tasks), desc=dataset, unit="file", dynamic_ncols=True) as bar:
            if nproc == 1:
                results: Iterable[str] = map(worker, tasks)
                for status in results:
                    counts[status] += 1
                    bar.update()
            else:
                chunksize = max(1, min(64, len(tasks) // (nproc * 8)))
                with multiprocessing.Pool(nproc) as pool:
                    for status in pool.imap_unordered(worker, tasks, chunksize=chunksize):
                        counts[status] += 1
                        bar.update()
    except BaseException:
        # Pool.terminate() kills workers mid-write, before atomic_path can clean up after them.
        remove_partial_files(out_dirs)
        raise
    summary = Summary(dataset, counts["converted"], counts["skipped"] + counts["validated"], counts["validated"],
                      removed)
    print(summary)
    return summary


# ---------------------------------------------------------------------------------------------------- command line
def build_parser(description: str, root_help: str) -> argparse.ArgumentParser:
    """The command line shared by the converters: ``ROOT [--nproc N]``; a converter may add options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("root", type=Path, help=root_help)
    parser.add_argument("--nproc", type=positive_int, default=1, help="worker processes (default: 1)")
    return parser


def run_cli(convert: Callable[..., Summary], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and call ``convert(**args)``; layout and label errors become one ``error:`` line.

    Returns:
        The exit code: 0 on success, 1 on an error.
    """
    args = vars(parser.parse_args(argv))
    try:
        convert(**args)
    except ValueError as exc:  # LayoutError included
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
