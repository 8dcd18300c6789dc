"""The demo's picture: for a few test scenes of each style, the image, its ground truth and the prediction."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .scenes import STYLES


def colourise(label: np.ndarray, palette: list[list[int]], ignore_index: int = 255) -> np.ndarray:
    """RGB picture of a trainId map (ignored pixels black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    lut[ignore_index] = 0
    return lut[label]


def save_predictions(config: str, work_dir: Path, data_root: Path, out: Path, per_style: int = 2) -> Path:
    """Predict ``per_style`` validation scenes of every style with the checkpoint in ``work_dir``; save a PNG grid.

    Rows: scenes (grouped by style); columns: image, ground truth, prediction.
    """
    from matplotlib.figure import Figure  # drawn without pyplot: no display, no global backend switch
    from mmseg.apis import inference_model

    from ..apis.inference import init_model
    from ..utils import atomic_path

    checkpoint = (work_dir / "last_checkpoint").read_text().strip()
    model = init_model(config, checkpoint)  # the checkpoint holds every weight, pretrained ones included
    palette = model.dataset_meta["palette"]
    rows = []
    for style in STYLES:
        images = sorted((data_root / style / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))[:per_style]
        for image_path in images:
            label_path = str(image_path).replace("leftImg8bit", "gtFine", 1).replace(
                "_leftImg8bit.png", "_gtFine_labelTrainIds.png")
            image = cv2.imread(str(image_path))
            label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
            if image is None or label is None:
                raise FileNotFoundError(f"cannot read {image_path} or its label {label_path}")
            prediction = inference_model(model, image).pred_sem_seg.data[0].cpu().numpy()
            rows.append((style, image[..., ::-1], colourise(label, palette), colourise(prediction, palette)))
    figure = Figure(figsize=(6, 2 * len(rows)))
    axes = figure.subplots(len(rows), 3, squeeze=False)
    for row, (style, image, truth, prediction) in zip(axes, rows):
        for axis, picture, title in zip(row, (image, truth, prediction), (style, "ground truth", "SoMA")):
            axis.imshow(picture, interpolation="nearest")
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    figure.tight_layout()
    with atomic_path(out) as temporary:
        figure.savefig(temporary, dpi=100)
    return out
