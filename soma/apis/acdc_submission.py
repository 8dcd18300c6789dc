"""An ACDC test-server submission: the normal test loop writes the predictions, then they are checked and zipped.

ACDC's test labels are private; the server (https://acdc.vision.ee.ethz.ch/submit) takes a zip of one 8-bit PNG per
test image, named after the image (``GOPRxxxx_frame_xxxxxx_rgb_anon.png``), of the input's size (1920x1080),
holding Cityscapes trainIds under one flat top-level ``labelTrainIds/`` folder (tools/acdc_submission.py's
docstring says where this format comes from). :func:`make_submission` runs mmengine's test loop on the config's
ACDC test datasets (split ``test``, at the config's ACDC test resolution) with
``DomainIoUMetric(format_only=True, output_dir=...)``, which writes exactly those files (mmseg's ``IoUMetric``
format), then checks that every image has its file, optionally maps trainIds to Cityscapes label ids
(``labelIds/``), and writes the zip.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image

from soma.config import load_config
from soma.config.datasets import image_only_pipeline, leaf_datasets
from soma.datasets.benchmarks import ACDC_CONDITIONS
from soma.peft import is_adapter_key
from soma.utils import atomic_path, check_device, check_output_dir, exit_on_user_error, load_trusted_checkpoint

ACDC_DATASET = "DGACDCDataset"
NUM_CLASSES = 19
IMAGE_SUFFIX = "_rgb_anon.png"
ZIP_NAME = "acdc_test_submission.zip"
TRAIN_ID_FOLDER, LABEL_ID_FOLDER = "labelTrainIds", "labelIds"


@dataclass
class Submission:
    """What a run wrote: the prediction files per condition, the zip, and the test resize used."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    zip_path: Path | None = None
    folder: str = TRAIN_ID_FOLDER
    test_scale: Any = None
    removed_stale: int = 0

    @property
    def num_images(self) -> int:
        return sum(len(files) for files in self.files.values())


# ---------------------------------------------------------------------------------------------- config
def _type_name(dataset: dict) -> str:
    kind = dataset.get("type")
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return name.split(".")[-1]  # "mmseg.DGACDCDataset" and the class itself read the same


def acdc_test_datasets(cfg: Config) -> dict[str, dict]:
    """The config's ``DGACDCDataset`` test entries by condition (the first of each condition).

    Raises:
        ValueError: the config's test (or val) dataloader holds no ACDC dataset.
    """
    for key in ("test_dataloader", "val_dataloader"):
        found: dict[str, dict] = {}
        for dataset in leaf_datasets((cfg.get(key) or {}).get("dataset")):
            if _type_name(dataset) == ACDC_DATASET:
                found.setdefault(str(dataset.get("condition", "")), dataset)
        if found:
            return found
    raise ValueError(f"the config has no {ACDC_DATASET} in its test_dataloader, so its ACDC test resolution is "
                     "unknown; use a Cityscapes→ACDC config, e.g. configs/soma/soma_dinov2-l_citys2acdc-512.py.")


def acdc_test_split(datasets: dict[str, dict], condition: str, data_root: str | Path) -> dict:
    """``condition``'s ACDC dataset config (else the first one's settings) on the unlabelled test split: its
    test pipeline without annotation loading, the test folders of ``data_root``."""
    dataset = dict(datasets.get(condition) or next(iter(datasets.values())))
    dataset.pop("data_prefix", None)  # the split's own folders
    pipeline = image_only_pipeline(dataset.get("pipeline") or [])
    if not any("Pack" in str(step.get("type")) for step in pipeline):
        pipeline.append(dict(type="PackSegInputs"))
    return dict(dataset, condition=condition, split="test", data_root=str(data_root), test_mode=True,
                pipeline=pipeline)


def resize_scale(pipeline: list[dict]) -> Any:
    """The scale (or factor) of the pipeline's first ``Resize``; ``None`` without one."""
    for step in pipeline:
        if "Resize" in str(step.get("type")):
            return step.get("scale") or step.get("scale_factor")
    return None


def is_merged_checkpoint(checkpoint: str | Path) -> bool:
    """Whether a checkpoint holds plain (merged, tools/merge_adapter.py) weights: no adapter tensors at all."""
    loaded = load_trusted_checkpoint(checkpoint)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else {}
    return bool(state) and not any(is_adapter_key(k) for k in state)


def submission_test_config(cfg: Config, checkpoint: str | Path, test_datasets: Sequence[dict], output_dir: Path,
                           work_dir: str | Path, strict: bool = True) -> Config:
    """``cfg`` set up for the test loop of a submission: the ACDC test datasets, ``DomainIoUMetric`` writing the
    trainId PNGs into ``output_dir`` (``format_only``), ``checkpoint`` loaded (strictly unless not ``strict``).
    A merged checkpoint is loaded into the config's backbone without adapters (``peft=None``)."""
    cfg = copy.deepcopy(cfg)
    loader = cfg.get("test_dataloader") or cfg.val_dataloader  # acdc_test_datasets also reads val_dataloader
    cfg.test_dataloader = dict(loader, dataset=dict(type="ConcatDataset", datasets=list(test_datasets)))
    cfg.setdefault("test_cfg", dict(type="TestLoop"))
    cfg.test_evaluator = dict(type="DomainIoUMetric", format_only=True, output_dir=str(output_dir))
    cfg.load_from = str(checkpoint)
    cfg.strict_loading = strict
    cfg.work_dir = str(work_dir)
    if cfg.get("visualizer"):  # an instance of its own, saving into this work dir (not an earlier run's)
        cfg.visualizer.name = f"visualizer_{Path(work_dir).name}"
    backbone = (cfg.get("model") or {}).get("backbone") or {}
    if backbone.get("peft") is not None and is_merged_checkpoint(checkpoint):
        backbone.peft = None  # the adapters are already folded into the saved weights
    return cfg


# ---------------------------------------------------------------------------------------------- data
def list_test_images(data_root: str | Path, conditions: Sequence[str]) -> dict[str, list[Path]]:
    """The test images of each condition, sorted, as ``DGACDCDataset(split="test")`` lists them.

    Raises:
        ValueError: an unknown condition, or two images with the same file name (the zip is flat).
        FileNotFoundError: a condition's ``rgb_anon/<cond>/test`` folder is missing or holds no image.
    """
    from soma.datasets.benchmarks import DGACDCDataset

    images: dict[str, list[Path]] = {}
    for condition in conditions:
        if condition not in ACDC_CONDITIONS:
            raise ValueError(f"unknown ACDC condition {condition!r}; choose from {', '.join(ACDC_CONDITIONS)}.")
        folder = Path(data_root) / "rgb_anon" / condition / "test"
        if not folder.is_dir():  # named here too: the dataset's message speaks of `data_prefix`
            where = "" if folder.is_absolute() else f" (from '{Path.cwd()}')"
            raise FileNotFoundError(f"ACDC test folder '{folder}'{where} does not exist; unpack "
                                    f"rgb_anon_trainvaltest.zip into '{data_root}' (it holds rgb_anon/<condition>/"
                                    f"test/<sequence>/*{IMAGE_SUFFIX}) or pass --data-root.")
        dataset = DGACDCDataset(condition=condition, split="test", data_root=str(data_root), test_mode=True,
                                pipeline=[], serialize_data=False)  # keeps `data_list` readable
        images[condition] = [Path(info["img_path"]) for info in dataset.data_list]
    seen: dict[str, Path] = {}
    for path in (p for paths in images.values() for p in paths):
        if path.name in seen:
            raise ValueError(f"two test images are named '{path.name}' ('{seen[path.name]}' and '{path}'); the "
                             "submission folder is flat, so names must be unique.")
        seen[path.name] = path
    return images


def prediction_name(image: Path) -> str:
    """The prediction's file name: the image's own (the server matches on the ``GOPRxxxx_frame_xxxxxx`` part), as
    mmseg's ``IoUMetric(output_dir=...)`` names it."""
    return image.with_suffix(".png").name


def train_id_to_label_id_lut() -> np.ndarray:
    """A 256-entry table from Cityscapes trainIds to label ids (cityscapesscripts'); other values → 0."""
    from cityscapesscripts.helpers.labels import trainId2label

    lut = np.zeros(256, np.uint8)
    for train_id, label in trainId2label.items():
        if 0 <= train_id < 255:
            lut[train_id] = label.id
    return lut


def write_label_png(labels: np.ndarray, path: Path) -> None:
    """An 8-bit grayscale PNG, written atomically (a killed run leaves no half file under the final name)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(tmp, format="PNG")  # 2-D uint8: mode "L"


def write_zip(files: Sequence[Path], folder: str, zip_path: Path) -> None:
    """``files`` under ``folder/`` in one zip, written atomically."""
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, arcname=f"{folder}/{path.name}")


# ---------------------------------------------------------------------------------------------- run
def make_submission(config: str | Path, checkpoint: str | Path, out_dir: str | Path,
                    data_root: str | Path | None = None, conditions: Sequence[str] = ACDC_CONDITIONS,
                    device: str = "cpu", label_ids: bool = False, force: bool = False,
                    strict: bool = True) -> Submission:
    """Predict ACDC's test images of ``conditions`` with the test loop and write the PNGs and the zip under
    ``out_dir`` (``labelTrainIds/`` or ``labelIds/``, and ``acdc_test_submission.zip``).

    Args:
        data_root: the ACDC root; default: the config's ACDC ``data_root`` (``data/acdc``).
        device: the torch device the model runs on.
        label_ids: write Cityscapes label ids under ``labelIds/`` instead of trainIds under ``labelTrainIds/``.
        force: reuse an output folder that holds an earlier submission (its other files are removed).
        strict: refuse a checkpoint that does not fit the config (else load what fits, logging the rest).

    Raises:
        FileNotFoundError: a missing config, checkpoint or test folder (named).
        ValueError: a config without an ACDC test dataset, an unknown condition, a model without 19 classes.
    """
    from soma.engine import build_runner

    if not conditions:
        raise ValueError(f"give at least one condition ({', '.join(ACDC_CONDITIONS)}).")
    check_device(device)
    cfg = load_config(config)
    datasets = acdc_test_datasets(cfg)
    if data_root is None:
        data_root = next(iter(datasets.values())).get("data_root") or "data/acdc"
    conditions = list(dict.fromkeys(conditions))
    images = list_test_images(data_root, conditions)  # before the slow model build
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint file '{checkpoint}' does not exist.")
    num_classes = ((cfg.get("model") or {}).get("decode_head") or {}).get("num_classes", NUM_CLASSES)
    if num_classes != NUM_CLASSES:
        raise ValueError(f"ACDC is scored on the {NUM_CLASSES} Cityscapes classes, but the model predicts "
                         f"{num_classes}; use a checkpoint trained with Cityscapes' classes.")
    check_output_dir(out_dir, [data_root, config, checkpoint], (TRAIN_ID_FOLDER, LABEL_ID_FOLDER, ZIP_NAME),
                     force=force)

    test_datasets = [acdc_test_split(datasets, condition, data_root) for condition in conditions]
    result = Submission(folder=LABEL_ID_FOLDER if label_ids else TRAIN_ID_FOLDER,
                        test_scale=resize_scale(test_datasets[-1]["pipeline"]))
    pred_dir = Path(out_dir) / result.folder
    with tempfile.TemporaryDirectory(prefix="acdc_submission_") as work_dir:
        # Label ids are mapped from the trainIds the metric writes, which then stay in the run's work dir.
        train_id_dir = Path(work_dir) / TRAIN_ID_FOLDER if label_ids else pred_dir
        runner = build_runner(submission_test_config(cfg, checkpoint, test_datasets, train_id_dir, work_dir,
                                                     strict=strict))
        runner.model.to(device)
        runner.test()
        missing = [image for paths in images.values() for image in paths
                   if not (train_id_dir / prediction_name(image)).is_file()]
        if missing:
            raise RuntimeError(f"the test loop wrote no prediction for {len(missing)} of the test images (e.g. "
                               f"'{missing[0]}'); nothing was zipped.")
        lut = train_id_to_label_id_lut() if label_ids else None
        for condition, paths in images.items():
            result.files[condition] = [pred_dir / prediction_name(image) for image in paths]
            if lut is not None:
                for image, out_file in zip(paths, result.files[condition]):
                    write_label_png(lut[np.asarray(Image.open(train_id_dir / out_file.name))], out_file)

    # Files of an earlier run with other conditions would otherwise sit next to this run's (not in its zip).
    keep = {p.name for paths in result.files.values() for p in paths}
    for stale in pred_dir.glob("*.png"):
        if stale.name not in keep:
            stale.unlink()
            result.removed_stale += 1
    result.zip_path = Path(out_dir) / ZIP_NAME
    write_zip([p for paths in result.files.values() for p in paths], result.folder, result.zip_path)
    return result


def summary(result: Submission) -> str:
    """What the tool prints: images per condition, stale files removed, and the zip to upload."""
    lines = [f"ACDC test predictions ({result.folder}, test resize {result.test_scale}):"]
    lines += [f"  {condition:<6} {len(files):>5} images" for condition, files in result.files.items()]
    lines.append(f"  total  {result.num_images:>5} images")
    if result.removed_stale:
        lines.append(f"removed {result.removed_stale} predictions of an earlier run (other conditions)")
    size = result.zip_path.stat().st_size / 2**20 if result.zip_path else 0.0
    lines.append(f"upload: {result.zip_path} ({size:.1f} MiB)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of tools/acdc_submission.py."""
    parser = argparse.ArgumentParser(description="Write predictions for the ACDC test split, zipped in the form "
                                                 "the ACDC benchmark server takes (see tools/acdc_submission.py).")
    parser.add_argument("config", help="a Cityscapes→ACDC config (its DGACDCDataset pipeline sets the resolution)")
    parser.add_argument("checkpoint", help="training checkpoint, or a merged one from tools/merge_adapter.py")
    parser.add_argument("--out", required=True, help="output folder (predictions and the zip)")
    parser.add_argument("--data-root", default=None,
                        help="ACDC root holding rgb_anon/<condition>/test (default: the config's, data/acdc)")
    parser.add_argument("--conditions", nargs="+", default=list(ACDC_CONDITIONS), choices=ACDC_CONDITIONS,
                        help="conditions to predict (default: all four, for the 'all adverse' task)")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda:0 if available, else cpu)")
    parser.add_argument("--label-ids", action="store_true",
                        help="write Cityscapes label ids (labelIds/) instead of trainIds (labelTrainIds/)")
    parser.add_argument("--force", action="store_true", help="replace an earlier submission in --out")
    parser.add_argument("--non-strict", action="store_true",
                        help="load a checkpoint that does not fit the config: only the tensors that fit (logged)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """tools/acdc_submission.py: predict, check and zip (see :func:`make_submission`)."""
    args = parse_args(argv)
    try:
        result = make_submission(args.config, args.checkpoint, args.out, data_root=args.data_root,
                                 conditions=args.conditions, device=args.device, label_ids=args.label_ids,
                                 force=args.force, strict=not args.non_strict)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(summary(result))
