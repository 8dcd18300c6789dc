"""Shared by the detection tests: a tiny generated copy of the DWD layout and mmdet's default scope."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DWD_CLASSES = ("bus", "bike", "car", "motor", "person", "rider", "truck")
DOMAIN_CAST = {  # a colour cast per domain, so the domains look different (as in the real data)
    "daytime_clear": (1.0, 1.0, 1.0), "daytime_foggy": (0.9, 0.9, 0.9), "dusk_rainy": (0.6, 0.5, 0.7),
    "night_rainy": (0.3, 0.3, 0.4), "night_sunny": (0.35, 0.3, 0.25)}


def voc_xml(name: str, size: int, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    """A VOC annotation: ``objects`` are (class, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    body = "".join(
        f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{difficult}"
        f"</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
        "</object>" for cls, (x1, y1, x2, y2), difficult in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size>{body}</annotation>")


def make_dwd_like(root: Path, num_train: int = 4, num_test: int = 2, size: int = 64) -> dict[str, list[str]]:
    """Five DWD domains under ``root``: ``<domain>/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``.

    Each image shows one large car (a bright box) and, in odd images, a person (a dark tall box) on a grey road;
    every domain has ``train.txt`` and ``test.txt`` lists. Returns the image ids per domain.
    """
    rng = np.random.default_rng(0)
    ids: dict[str, list[str]] = {}
    for domain, cast in DOMAIN_CAST.items():
        voc = root / domain / "VOC2007"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        names = [f"{domain[:3]}{i:04d}" for i in range(num_train + num_test)]
        for index, name in enumerate(names):
            image = np.full((size, size, 3), 110, np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
            x1, y1 = int(rng.integers(4, 20)), int(rng.integers(20, 30))
            car = (x1, y1, x1 + 30, y1 + 20)
            image[car[1] - 1:car[3], car[0] - 1:car[2]] = (220, 40, 40)
            objects = [("car", car, 0)]
            if index % 2:
                person = (size - 14, 8, size - 6, 40)
                image[person[1] - 1:person[3], person[0] - 1:person[2]] = (30, 30, 160)
                objects.append(("person", person, 0))
            image = (image * np.array(cast)).astype(np.uint8)
            Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
            (voc / "Annotations" / f"{name}.xml").write_text(voc_xml(name, size, objects))
        (voc / "ImageSets/Main/train.txt").write_text("\n".join(names[:num_train]) + "\n")
        (voc / "ImageSets/Main/test.txt").write_text("\n".join(names[num_train:]) + "\n")
        ids[domain] = names
    return ids


@pytest.fixture
def dwd_root(tmp_path: Path) -> Path:
    make_dwd_like(tmp_path / "dwd")
    return tmp_path / "dwd"


@pytest.fixture
def mmdet_scope():
    """Build from mmdet's registries, as the detection configs' `default_scope = "mmdet"` does."""
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmdet"):
        yield
