"""Inference with a trained SoMA model: the library part of tools/inference.py (and of the ACDC submission and
the demo's figure).

* :func:`init_model`: the config's model from mmseg's ``init_model`` (segmentation) or mmdet's ``init_detector``
  (detection, ``default_scope = "mmdet"``), then the checkpoint loaded *strictly* by :func:`load_trained_weights`
  (mmseg and mmdet load non-strictly, which would hide a checkpoint of another config), merged or not;
* :func:`run_inference`: predictions on an image or a folder, written as palette PNGs and overlays
  (segmentation) or boxes drawn on the image (detection), through mmseg's ``inference_model`` and mmdet's
  ``inference_detector`` (the config's test pipeline) and their visualisers.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from PIL import Image
from tqdm import tqdm

from ..config import check_config_types, load_config
from ..utils import check_device, check_output_dir
from ..config.datasets import image_only_pipeline, leaf_datasets
from ..weights import load_trained_weights

__all__ = ["IMAGE_SUFFIXES", "OUTPUT_FOLDERS", "Inferencer", "dataset_meta", "init_model", "list_images",
           "read_image", "run_inference", "save_palette_png", "task_of"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------------------------------------- loading
def task_of(cfg: Config) -> str:
    """``"det"`` for mmdet configs (``default_scope = "mmdet"``), else ``"seg"``."""
    return "det" if cfg.get("default_scope", "mmseg") == "mmdet" else "seg"


def dataset_meta(cfg: Config, checkpoint_meta: dict[str, Any], num_classes: int | None) -> dict[str, Any]:
    """Classes and palette: from the checkpoint (training saves the dataset's metainfo), else from the
    config's test dataset class, else generated for ``num_classes`` (merged checkpoints carry no metainfo)."""
    saved = checkpoint_meta.get("dataset_meta")
    if isinstance(saved, dict) and saved.get("classes"):
        meta = dict(saved)
    else:
        meta = _config_dataset_metainfo(cfg)
    classes = list(meta.get("classes") or [])
    if not classes:
        count = num_classes or 0
        if count <= 0:
            raise ValueError("cannot tell the class names: the checkpoint has no `dataset_meta` and the config "
                             "names no test dataset; add `test_dataloader` to the config.")
        classes = [f"class {i}" for i in range(count)]
    palette = [tuple(int(c) for c in colour) for colour in (meta.get("palette") or [])]
    if len(palette) < len(classes):  # a fixed seed, so that colours are the same on every run
        rng = np.random.default_rng(42)
        palette += [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(len(classes) - len(palette))]
    return dict(meta, classes=tuple(classes), palette=palette[: len(classes)])


def _config_dataset_metainfo(cfg: Config) -> dict[str, Any]:
    """``METAINFO`` of the first dataset class named by the config's test (or val) dataloader, merged with a
    ``metainfo`` override of the dataset config."""
    if task_of(cfg) == "det":  # the task's registry: mmengine's root one does not hold mmseg's or mmdet's datasets
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS

    for key in ("test_dataloader", "val_dataloader"):
        datasets = leaf_datasets(cfg.get(key, {}).get("dataset"))
        if not datasets:
            continue
        dataset = datasets[0]
        cls = DATASETS.get(dataset["type"]) if isinstance(dataset.get("type"), str) else dataset.get("type")
        meta = dict(getattr(cls, "METAINFO", {}) or {}) if cls is not None else {}
        meta.update(dataset.get("metainfo") or {})
        if meta.get("classes"):
            return meta
    return {}


def _test_pipeline(cfg: Config) -> list[dict]:
    """The config's test pipeline for bare images: ``test_pipeline``, else the test dataset's, without
    annotation loading; an image loader first (mmseg's ``inference_model`` swaps it for the array loader)."""
    pipeline = cfg.get("test_pipeline")
    if not pipeline:
        datasets = leaf_datasets(cfg.get("test_dataloader", {}).get("dataset"))
        pipeline = datasets[0].get("pipeline") if datasets else None
    return image_only_pipeline(pipeline or [dict(type="LoadImageFromFile"), dict(type="PackSegInputs")])


def _build_untrained(cfg: Config) -> torch.nn.Module:
    """``cfg``'s model on the CPU without any weights loaded, by mmseg's ``init_model`` or mmdet's
    ``init_detector`` (which also turns SyncBN into BN for single-process inference)."""
    check_config_types(cfg)  # an unknown type is named with its key path before mmengine's bare KeyError
    if task_of(cfg) == "seg":
        from mmseg.apis import init_model as init_segmentor

        return init_segmentor(cfg, checkpoint=None, device="cpu")
    from mmdet.apis import init_detector

    # palette="random" spares init_detector building the test dataset; classes and palette are set afterwards.
    with warnings.catch_warnings(record=True) as caught:
        model = init_detector(cfg, checkpoint=None, palette="random", device="cpu")
    for warning in caught:  # only this one is moot: the checkpoint is loaded next, by load_trained_weights
        if "checkpoint is None" not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def init_model(config: str | Path, checkpoint: str | Path, device: str = "cpu", strict: bool = True) -> torch.nn.Module:
    """Build ``config``'s model, load ``checkpoint`` (unmerged or merged SoMA) and prepare it for inference.

    Returns:
        The model in eval mode on ``device``, with ``model.cfg`` (holding ``test_pipeline``) and
        ``model.dataset_meta`` (``classes``, ``palette``) set, as mmseg's ``init_model`` and mmdet's
        ``init_detector`` leave it.

    Raises:
        FileNotFoundError: a missing config or checkpoint.
        CheckpointMismatchError: a checkpoint that does not fit the config's model (unless not ``strict``).
    """
    for path, what in ((config, "config"), (checkpoint, "checkpoint")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} file '{path}' does not exist.")
    cfg = load_config(config)
    if cfg.model.get("backbone") is not None:
        cfg.model.backbone.init_cfg = None  # the checkpoint holds every weight, base and adapters
    model = _build_untrained(cfg)
    meta = load_trained_weights(model, checkpoint, strict=strict)
    if task_of(cfg) == "seg":
        cfg.test_pipeline = _test_pipeline(cfg)
        num_classes = getattr(getattr(model, "decode_head", None), "num_classes", None)
    else:
        num_classes = getattr(getattr(model, "bbox_head", None), "num_classes", None)
    model.cfg = cfg
    model.dataset_meta = dataset_meta(cfg, meta, num_classes)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------- images
def list_images(path: str | Path) -> tuple[Path, list[Path]]:
    """The root folder and the image files of ``path`` (one file, or every image under a folder, sorted).

    Raises:
        FileNotFoundError: ``path`` does not exist, or a folder holds no image.
    """
    path = Path(path)
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input '{path}' does not exist; give an image file or a folder of images.")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"folder '{path}' holds no image ({', '.join(IMAGE_SUFFIXES)}).")
    return path, files


def read_image(path: Path) -> np.ndarray:
    """The image as a BGR uint8 array (as the test pipeline's ``LoadImageFromFile`` decodes it).

    Raises:
        ValueError: the file cannot be decoded as an image.
    """
    try:
        image = mmcv.imread(str(path), flag="color")
    except Exception as exc:  # cv2/PIL raise many types for broken or empty files
        raise ValueError(f"cannot decode image '{path}': {exc}; is it a valid image file?") from exc
    if image is None or image.size == 0:
        raise ValueError(f"cannot decode image '{path}': not an image file, or a truncated one.")
    return image


def save_palette_png(labels: np.ndarray, palette: Sequence[Sequence[int]], out_file: Path) -> None:
    """Write class ids as a palette PNG: viewers show the colours, readers get the ids back losslessly."""
    if labels.max(initial=0) > 255:
        raise ValueError(f"cannot write {labels.max() + 1} classes into an 8-bit palette PNG.")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [int(c) for colour in palette[:256] for c in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_file)


@dataclass
class Inferencer:
    """One loaded model and its visualiser; :meth:`__call__` writes the outputs of one image."""

    model: torch.nn.Module
    out_dir: Path
    opacity: float = 0.5
    score_thr: float = 0.3

    def __post_init__(self) -> None:
        self.task = task_of(self.model.cfg)
        meta = self.model.dataset_meta
        if self.task == "seg":
            from mmseg.visualization import SegLocalVisualizer

            self.visualizer = SegLocalVisualizer(name="soma_inference", alpha=self.opacity)
        else:
            from mmdet.visualization import DetLocalVisualizer

            self.visualizer = DetLocalVisualizer(name="soma_inference", alpha=self.opacity)
        self.visualizer.dataset_meta = dict(classes=meta["classes"], palette=meta["palette"])

    def __call__(self, image_file: Path, relative: Path) -> list[Path]:
        """Predict on ``image_file`` and write its outputs under ``out_dir`` (``relative`` keeps sub-folders)."""
        image = read_image(image_file)
        name = relative.with_suffix(".png")
        rgb = mmcv.bgr2rgb(image)
        if self.task == "seg":
            from mmseg.apis import inference_model

            result = inference_model(self.model, image)
            labels = result.pred_sem_seg.data[0].cpu().numpy()
            pred_file, overlay_file = self.out_dir / "pred" / name, self.out_dir / "overlay" / name
            save_palette_png(labels, self.model.dataset_meta["palette"], pred_file)
            overlay_file.parent.mkdir(parents=True, exist_ok=True)
            self.visualizer.add_datasample(str(name), rgb, result, draw_gt=False, show=False,
                                           out_file=str(overlay_file))
            return [pred_file, overlay_file]
        from mmdet.apis import inference_detector

        result = inference_detector(self.model, image)
        boxes_file = self.out_dir / "boxes" / name
        boxes_file.parent.mkdir(parents=True, exist_ok=True)
        self.visualizer.add_datasample(str(name), rgb, result, draw_gt=False, show=False,
                                       pred_score_thr=self.score_thr, out_file=str(boxes_file))
        return [boxes_file]


OUTPUT_FOLDERS = ("pred", "overlay", "boxes")


def run_inference(config: str | Path, checkpoint: str | Path, inputs: str | Path, out_dir: str | Path,
                  device: str = "cpu", opacity: float = 0.5, score_thr: float = 0.3, force: bool = False,
                  strict: bool = True) -> list[Path]:
    """Predict on an image or every image under a folder; returns the files written.

    Raises:
        FileNotFoundError: a missing config, checkpoint or input, or a folder without images.
        ValueError: an undecodable image (named), or a checkpoint that does not fit the config.
        OutputExistsError: ``out_dir`` is (inside) the input folder, or holds earlier outputs and not ``force``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"--opacity must lie in [0, 1], got {opacity}.")
    check_device(device)
    root, files = list_images(inputs)  # before the (slow) model build: a typo fails at once
    check_output_dir(out_dir, [root, config, checkpoint], OUTPUT_FOLDERS, force=force)
    model = init_model(config, checkpoint, device, strict=strict)
    inferencer = Inferencer(model, Path(out_dir), opacity=opacity, score_thr=score_thr)
    written = []
    for image_file in tqdm(files, desc="inference", unit="img", disable=len(files) == 1):
        written += inferencer(image_file, image_file.relative_to(root))
    return written
