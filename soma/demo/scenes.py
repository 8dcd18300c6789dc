"""Procedural driving-like scenes for the CPU demo: one label layout, rendered in several visual styles.

A scene is a label map in Cityscapes trainIds (8 of the 19 classes occur: road, sidewalk, building, pole,
vegetation, sky, person, car). :func:`render` paints it in a *style*: ``"source"`` (the training domain),
``"night"`` (dark, blue cast, light spots), ``"fog"`` (blend to grey, stronger towards the horizon) or
``"palette"`` (a differently coloured city). Rendering the same layout in every style gives target domains
with identical labels, so the domain shift is purely visual.

:func:`write_dataset` writes the images and labels in the Cityscapes file layout, one data root per style::

    ROOT/<style>/leftImg8bit/<split>/demo/scene_0000_leftImg8bit.png
    ROOT/<style>/gtFine/<split>/demo/scene_0000_gtFine_labelTrainIds.png

Everything is deterministic given the seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..utils import atomic_path, write_text_atomic

# Cityscapes trainIds of the classes a demo scene contains.
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 5, 8, 10, 11, 13
SCENE_CLASSES = (ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR)
IGNORE_INDEX = 255
STYLES = ("source", "night", "fog", "palette")
TARGET_STYLES = STYLES[1:]
# Coarse categories for pretraining (the stand-in for a foundation model's broad knowledge):
# flat (road, sidewalk), construction (building, pole), nature, sky, objects (person, car).
COARSE_OF_TRAINID = {ROAD: 0, SIDEWALK: 0, BUILDING: 1, POLE: 1, VEGETATION: 2, SKY: 3, PERSON: 4, CAR: 4}
NUM_COARSE = 5

# Class colours (RGB) of the two city looks; every rendered pixel gets texture and noise on top.
SOURCE_COLOURS = {
    ROAD: (90, 90, 95), SIDEWALK: (170, 160, 150), BUILDING: (150, 110, 90), POLE: (60, 60, 60),
    VEGETATION: (60, 130, 50), SKY: (120, 170, 230), PERSON: (200, 60, 60), CAR: (40, 70, 160),
}
PALETTE_COLOURS = {
    ROAD: (150, 80, 70), SIDEWALK: (90, 110, 140), BUILDING: (210, 210, 160), POLE: (200, 190, 60),
    VEGETATION: (190, 120, 40), SKY: (230, 190, 200), PERSON: (60, 180, 170), CAR: (200, 200, 210),
}


def make_layout(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A random street-scene label map (``size``×``size``, uint8 trainIds) with a plausible layout."""
    label = np.full((size, size), SKY, np.uint8)
    horizon = int(rng.integers(size * 3 // 10, size * 9 // 20))
    # Buildings rise from the horizon; trees stand in front of some of them.
    x = int(rng.integers(-6, 2))
    while x < size:
        width = int(rng.integers(size // 8, size // 3))
        top = int(rng.integers(2, horizon - 2))
        label[top:horizon + 2, max(x, 0):x + width] = BUILDING
        x += width + int(rng.integers(0, 4))
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = int(rng.integers(0, size)), int(rng.integers(horizon - 8, horizon + 2))
        radius = int(rng.integers(size // 14, size // 7))
        cv2.circle(label, (cx, cy), radius, VEGETATION, -1)
        label[cy:horizon + 3, max(cx - 1, 0):cx + 1] = VEGETATION  # trunk
    # Ground: sidewalk everywhere below the horizon, the road as a trapezoid to the vanishing point.
    label[horizon:] = SIDEWALK
    vanish_x = int(rng.integers(size * 3 // 8, size * 5 // 8))
    half_bottom = int(rng.integers(size * 3 // 8, size * 9 // 16))
    road = np.array([[vanish_x - 2, horizon], [vanish_x + 2, horizon],
                     [size // 2 + half_bottom, size - 1], [size // 2 - half_bottom, size - 1]], np.int32)
    cv2.fillConvexPoly(label, road, ROAD)
    # Objects get larger towards the bottom (perspective): poles and people on the sidewalk, cars on the road.
    def depth_scale(y: int) -> float:
        return 0.3 + 0.9 * (y - horizon) / max(size - horizon, 1)

    for side in (-1, 1):
        if rng.random() < 0.8:
            y = int(rng.integers(horizon + 4, size - 2))
            offset = half_bottom * (y - horizon) / (size - horizon) + 2
            px = int(np.clip(size // 2 + side * (offset + rng.integers(1, 6)), 0, size - 1))
            height = int(8 + 22 * depth_scale(y))
            label[max(y - height, 0):y, px:px + max(1, int(2 * depth_scale(y)))] = POLE
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.integers(horizon + 5, size))
        scale = depth_scale(y)
        width, height = max(2, int(3 * scale)), max(4, int(10 * scale))
        offset = half_bottom * (y - horizon) / (size - horizon)
        side = 1 if rng.random() < 0.5 else -1
        px = int(np.clip(size // 2 + side * (offset + rng.integers(1, 8)), 0, size - width))
        cv2.ellipse(label, (px + width // 2, y - height // 2), (width // 2 + 1, height // 2), 0, 0, 360, PERSON, -1)
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.integers(horizon + 4, size))
        scale = depth_scale(y)
        width, height = max(4, int(18 * scale)), max(3, int(9 * scale))
        spread = half_bottom * (y - horizon) / (size - horizon)
        cx = int(vanish_x + (size // 2 - vanish_x) * (y - horizon) / (size - horizon)
                 + rng.uniform(-0.8, 0.8) * spread)
        x0 = int(np.clip(cx - width // 2, 0, size - width))
        label[y - height:y, x0:x0 + width] = CAR
        label[y - height - max(1, height // 2):y - height, x0 + width // 5:x0 + width - width // 5] = CAR  # cabin
    return label


def _texture(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel brightness patterns that make classes look like what they are (windows, lanes, leaves)."""
    size = label.shape[0]
    shade = np.ones(label.shape, np.float32)
    ys, xs = np.mgrid[0:size, 0:size]
    windows = ((ys % 5) < 2) & ((xs % 4) < 2)
    shade[(label == BUILDING) & windows] = 0.55
    lane = (np.abs(xs - size // 2) < 1) & ((ys // 3) % 2 == 0)
    shade[(label == ROAD) & lane] = 2.0
    shade[label == VEGETATION] *= 0.7 + 0.6 * rng.random(int((label == VEGETATION).sum()), dtype=np.float32)
    shade[label == SKY] *= 1.0 + 0.25 * (ys[label == SKY] / size)  # brighter towards the horizon
    shade[label == CAR] *= np.where((ys[label == CAR] % 4) == 0, 0.6, 1.0)
    return shade


def render(label: np.ndarray, style: str, rng: np.random.Generator,
           colours: dict[int, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Paint ``label`` in ``style`` (one of :data:`STYLES`); returns an RGB uint8 image.

    Args:
        label: a layout from :func:`make_layout`.
        style: the visual domain.
        rng: randomness for noise and texture.
        colours: class colours overriding the style's (pretraining draws random ones).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}.")
    palette = colours or (PALETTE_COLOURS if style == "palette" else SOURCE_COLOURS)
    lut = np.zeros((256, 3), np.float32)
    for train_id, colour in palette.items():
        lut[train_id] = colour
    image = lut[label] * _texture(label, rng)[..., None]
    image += rng.normal(0.0, 6.0, image.shape).astype(np.float32)
    size = label.shape[0]
    if style == "night":
        image = image * np.array([0.18, 0.2, 0.32], np.float32) + np.array([5, 5, 18], np.float32)
        ys, xs = np.mgrid[0:size, 0:size]
        for _ in range(int(rng.integers(3, 7))):  # street lamps and headlights
            cy, cx = rng.integers(0, size, 2)
            radius = rng.uniform(2.0, 5.0)
            glow = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius ** 2))
            image += glow[..., None] * np.array([255, 220, 150], np.float32)
    elif style == "fog":
        rows = np.where((label != SKY).any(axis=1))[0]
        horizon = rows.min() if len(rows) else size // 2
        depth = np.clip(1.0 - (np.arange(size) - horizon) / (size - horizon + 1e-6), 0.0, 1.0)  # 1 far, 0 near
        density = (0.45 + 0.5 * depth)[:, None, None].astype(np.float32)
        image = image * (1 - density) + np.float32(190) * density
    return np.clip(image, 0, 255).astype(np.uint8)


def random_colours(rng: np.random.Generator) -> dict[int, tuple[int, int, int]]:
    """Random class colours: pretraining sees every class in many looks, so colour alone is not a class."""
    return {train_id: tuple(int(c) for c in rng.integers(20, 236, 3)) for train_id in SCENE_CLASSES}


def _image_path(root: Path, style: str, split: str, index: int) -> Path:
    return root / style / "leftImg8bit" / split / "demo" / f"scene_{index:04d}_leftImg8bit.png"


def _label_path(root: Path, style: str, split: str, index: int) -> Path:
    return root / style / "gtFine" / split / "demo" / f"scene_{index:04d}_gtFine_labelTrainIds.png"


def _write_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary:  # a killed run leaves no half-written PNG
        if not cv2.imwrite(str(temporary), array):
            raise OSError(f"could not write {path}")


def write_dataset(root: str | Path, num_train: int = 400, num_val: int = 100, size: int = 64,
                  seed: int = 0) -> Path:
    """Write the demo dataset under ``root`` (skipped if the same settings were written before).

    Source style: ``train`` and ``val`` splits; each target style: ``val`` only, with the same layouts as the
    source ``val`` split. Returns ``root``.
    """
    root = Path(root)
    settings = dict(num_train=num_train, num_val=num_val, size=size, seed=seed, version=1)
    stamp = root / "settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        for index in range(count):
            label = make_layout(rng, size)
            styles = ("source",) if split == "train" else STYLES
            for style in styles:
                image = render(label, style, rng)
                _write_png(_image_path(root, style, split, index), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                _write_png(_label_path(root, style, split, index), label)
    write_text_atomic(stamp, json.dumps(settings))
    return root
