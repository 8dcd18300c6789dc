"""Write predictions for the ACDC test split, zipped in the form the ACDC benchmark server takes.

    python tools/acdc_submission.py CONFIG CHECKPOINT --out DIR [--data-root data/acdc]
        [--conditions fog night rain snow] [--device cuda:0] [--label-ids] [--force] [--non-strict]

ACDC's test labels are private: test scores come only from the server (https://acdc.vision.ee.ethz.ch/submit,
behind a login), which evaluates "all adverse conditions" (the 2,000 test images of the four conditions) or one
condition. This tool predicts every image of ``ROOT/rgb_anon/<cond>/test/<seq>/*_rgb_anon.png`` at the config's ACDC
test resolution (its ``DGACDCDataset`` pipeline: Resize to 1920x1080, slide inference) and writes, for
each image ``NAME_rgb_anon.png``:

* ``DIR/labelTrainIds/NAME_rgb_anon.png``: an 8-bit single-channel PNG of the input's size (1920x1080) holding the
  Cityscapes **trainIds** 0-18 of the prediction;
* ``DIR/acdc_test_submission.zip``: those files under one top-level ``labelTrainIds/`` folder, flat (ACDC's frame
  names, ``GOPRxxxx_frame_xxxxxx``, are unique across conditions; the tool checks this). Upload this file.

The server's own instructions are behind its login (we could not read them), so the format is the one of methods
whose published ACDC test scores came from that server:

* DAFormer / HRDA / MIC (L. Hoyer, ETH Zurich, the lab that made ACDC), README section on Cityscapes→ACDC test
  results: ``python -m tools.test CONFIG CKPT --test-set --format-only --eval-option imgfile_prefix=labelTrainIds
  to_label_id=False``, which writes trainIds (``to_label_id=False``: not Cityscapes label ids) as one
  ``<image name>.png`` per image in one flat ``labelTrainIds`` folder (https://github.com/lhoyer/HRDA,
  ``mmseg/datasets/cityscapes.py`` ``results2img``);
* Rein (https://github.com/w1oves/Rein, on the ACDC leaderboard; ``configs/_base_/datasets/
  dg_citys2acdc_1024x1024.py``): mmseg's ``IoUMetric(format_only=True)`` over the four test sets, which writes the
  same: trainId PNGs named ``<image name>.png`` in one flat folder;
* the lab's Dark Zurich server, same format family, matches predictions to its ground truth
  (``*_gt_labelTrainIds.png``) by the frame name and reports "Missing prediction for ground truth file ..."
  otherwise (https://github.com/W-zx-Y/DANNet/issues/4); its zips hold a top-level ``labelTrainIds/`` folder
  (next to ``confidence/`` and ``labelTrainIds_invalid/``, which only its uncertainty track scores).

``--label-ids`` writes Cityscapes labelIds (trainId → id through cityscapesscripts' table) under ``labelIds/``
instead, the encoding the Cityscapes server takes, should a server ask for it.

The checkpoint is loaded strictly (``--non-strict`` loads what fits). An output folder holding an earlier
submission is reused only with ``--force`` (its predictions of other conditions are then removed); it must not
lie inside the ACDC folder.
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from soma.utils import atomic_path, check_output_dir, exit_on_user_error, load_config  # noqa: E402
from soma.utils.dataset_config import image_only_pipeline, leaf_datasets  # noqa: E402

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
ACDC_DATASET = "DGACDCDataset"
NUM_CLASSES = 19
IMAGE_SUFFIX = "_rgb_anon.png"
ZIP_NAME = "acdc_test_submission.zip"


@dataclass
class Submission:
    """What a run wrote: the prediction files per condition, the zip, and the test resize used."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    zip_path: Path | None = None
    folder: str = "labelTrainIds"
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


def acdc_test_pipeline(datasets: dict[str, dict], condition: str) -> list[dict]:
    """The test pipeline of ``condition``'s ACDC dataset (else the first one's), without annotation loading:
    the test split has no labels."""
    dataset = datasets.get(condition) or next(iter(datasets.values()))
    pipeline = image_only_pipeline(dataset.get("pipeline") or [])
    if not any("Pack" in str(step.get("type")) for step in pipeline):
        pipeline.append(dict(type="PackSegInputs"))
    return pipeline


def _resize_scale(pipeline: list[dict]) -> Any:
    for step in pipeline:
        if "Resize" in str(step.get("type")):
            return step.get("scale") or step.get("scale_factor")
    return None


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
    """The prediction's file name: the image's own (the server matches on the ``GOPRxxxx_frame_xxxxxx`` part)."""
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
    """Predict ACDC's test images of ``conditions`` and write the PNGs and the zip under ``out_dir``.

    Args:
        data_root: the ACDC root; default: the config's ACDC ``data_root`` (``data/acdc``).
        label_ids: write Cityscapes label ids under ``labelIds/`` instead of trainIds under ``labelTrainIds/``.
        force: reuse an output folder that holds an earlier submission.
        strict: refuse a checkpoint that does not fit the config (else load what fits, logging the rest).

    Raises:
        FileNotFoundError: a missing config, checkpoint or test folder (named).
        ValueError: a config without an ACDC test dataset, an unknown condition, a model without 19 classes.
    """
    from mmseg.apis import inference_model

    from tools.inference import init_model

    if not Path(config).is_file():
        raise FileNotFoundError(f"config file '{config}' does not exist.")
    if not conditions:
        raise ValueError(f"give at least one condition ({', '.join(ACDC_CONDITIONS)}).")
    datasets = acdc_test_datasets(load_config(config))
    if data_root is None:
        data_root = next(iter(datasets.values())).get("data_root") or "data/acdc"
    images = list_test_images(data_root, list(dict.fromkeys(conditions)))  # before the slow model build

    check_output_dir(out_dir, [data_root, config, checkpoint], ("labelTrainIds", "labelIds", ZIP_NAME), force=force)
    model = init_model(config, checkpoint, device, strict=strict)
    num_classes = len(model.dataset_meta["classes"])
    if num_classes != NUM_CLASSES:
        raise ValueError(f"ACDC is scored on the {NUM_CLASSES} Cityscapes classes, but the model predicts "
                         f"{num_classes}; use a checkpoint trained with Cityscapes' classes.")
    lut = train_id_to_label_id_lut() if label_ids else None
    result = Submission(folder="labelIds" if label_ids else "labelTrainIds")
    pred_dir = Path(out_dir) / result.folder
    bar = tqdm(total=sum(len(paths) for paths in images.values()), desc="ACDC test", unit="img")
    for condition, paths in images.items():
        # Set per condition: a config may give the conditions different pipelines.
        model.cfg.test_pipeline = acdc_test_pipeline(datasets, condition)
        result.test_scale = _resize_scale(model.cfg.test_pipeline)
        written = []
        for image in paths:
            bar.set_postfix_str(condition)
            labels = inference_model(model, str(image)).pred_sem_seg.data[0].cpu().numpy()
            out_file = pred_dir / prediction_name(image)
            write_label_png(lut[labels] if lut is not None else labels, out_file)
            written.append(out_file)
            bar.update()
        result.files[condition] = written
    bar.close()

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
    lines = [f"ACDC test predictions ({result.folder}, test resize {result.test_scale}):"]
    lines += [f"  {condition:<6} {len(files):>5} images" for condition, files in result.files.items()]
    lines.append(f"  total  {result.num_images:>5} images")
    if result.removed_stale:
        lines.append(f"removed {result.removed_stale} predictions of an earlier run (other conditions)")
    size = result.zip_path.stat().st_size / 2**20 if result.zip_path else 0.0
    lines.append(f"upload: {result.zip_path} ({size:.1f} MiB)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parse_args(argv)
    try:
        result = make_submission(args.config, args.checkpoint, args.out, data_root=args.data_root,
                                 conditions=args.conditions, device=args.device, label_ids=args.label_ids,
                                 force=args.force, strict=not args.non_strict)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(summary(result))


if __name__ == "__main__":
    main()
