"""tools/convert_datasets: each converter on a tiny generated copy of its dataset's real layout and label format.

Labels are written in the formats the datasets ship: GTA5 and Mapillary as palette PNGs whose palette colours
differ from the indices, SYNTHIA as 16-bit 3-channel PNGs encoded here by hand (class id in the first channel,
independent of OpenCV's channel order), Cityscapes/ACDC/UrbanSyn as 8-bit grey PNGs. Expected trainIds are written
out by hand per id.
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from soma.convert.datasets import acdc, cityscapes, gta5, mapillary, synthia, urbansyn
from soma.convert.datasets.common import LayoutError, Summary, build_lut, remap

from ..conftest import REPO

H, W = 16, 32
# Cityscapes label id → trainId, by hand: road 7 → 0, sidewalk 8 → 1, building 11 → 2, person 24 → 11,
# car 26 → 13, bicycle 33 → 18; unlabeled 0, parking 9 and ids the table lacks (34, 200) → 255.
CITYSCAPES_EXPECTED = {7: 0, 8: 1, 11: 2, 24: 11, 26: 13, 33: 18, 0: 255, 9: 255, 34: 255, 200: 255}
# SYNTHIA RAND-CITYSCAPES id → trainId: road 3 → 0, car 8 → 13, pedestrian 10 → 11, wall 21 → 3, sky 1 → 10,
# traffic light 15 → 6; void 0, terrain 16, truck 18, train 20, lanemarking 22 and a 16-bit 300 → 255.
SYNTHIA_EXPECTED = {3: 0, 8: 13, 10: 11, 21: 3, 1: 10, 15: 6, 0: 255, 16: 255, 18: 255, 20: 255, 22: 255, 300: 255}
# UrbanSyn ss values are trainIds; 19 is unlabelled.
URBANSYN_EXPECTED = {0: 0, 5: 5, 13: 13, 18: 18, 19: 255, 255: 255}
# Mapillary v1.2 id → trainId: road 13 → 0, car 55 → 13, lane marking (general) 24 → 0, bicyclist 20 → 12,
# traffic sign (front) 50 → 7, utility pole 47 → 5, on rails 58 → 16, curb 2 → 1; bird 0, unlabeled 65 → 255.
MAPILLARY_EXPECTED = {13: 0, 55: 13, 24: 0, 20: 12, 50: 7, 47: 5, 58: 16, 2: 1, 0: 255, 65: 255}


# ---------------------------------------------------------------------------------------------------- writers
def id_map(ids: list[int], shape: tuple[int, int] = (H, W), block: int = 1) -> np.ndarray:
    """A label map cycling through ``ids`` in ``block``×``block`` squares (so every id occurs)."""
    rows, cols = shape[0] // block, shape[1] // block
    small = np.asarray(ids)[np.arange(rows * cols) % len(ids)].reshape(rows, cols)
    return np.kron(small, np.ones((block, block), dtype=small.dtype))


def expected(ids: np.ndarray, table: dict[int, int]) -> np.ndarray:
    return np.vectorize(table.__getitem__)(ids).astype(np.uint8)


def save_grey(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8)).save(path)


def save_palette(path: Path, ids: np.ndarray) -> None:
    """A palette PNG whose colours are not the indices (as GTA5's and Mapillary's labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(ids.astype(np.uint8))
    img.putpalette([c for i in range(256) for c in ((255 - i) % 256, (i * 7) % 256, (i * 13) % 256)])
    img.save(path)
    with Image.open(path) as check:  # the test only has power if the file is a palette PNG of other colours
        assert check.mode == "P" and not np.array_equal(np.asarray(check.convert("L")), ids)


def save_png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG encoded by hand: channel 0 of ``rgb`` is the file's first (R) channel, whatever OpenCV does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def save_image(path: Path, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return image


def read_grey(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert label is not None and label.dtype == np.uint8 and label.ndim == 2, path
    return label


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file()]


# ---------------------------------------------------------------------------------------------------- layouts
GTA_IDS = id_map(list(CITYSCAPES_EXPECTED))


def make_gta(root: Path) -> list[Path]:
    """Two frames: a palette label and a grey one; returns the expected outputs."""
    for i in range(2):
        save_image(root / "images" / f"0000{i}.png", i)
    save_palette(root / "labels" / "00000.png", GTA_IDS)
    save_grey(root / "labels" / "00001.png", GTA_IDS[::-1])
    return [root / "labels" / "00000_labelTrainIds.png", root / "labels" / "00001_labelTrainIds.png"]


SYNTHIA_IDS = id_map(list(SYNTHIA_EXPECTED))


def make_synthia(root: Path) -> list[Path]:
    save_image(root / "RGB" / "0000000.png")
    # Channel 1 (instance ids) and 2 differ from the class ids, so reading the wrong channel fails the mapping.
    rgb = np.stack([SYNTHIA_IDS, SYNTHIA_IDS * 3 + 1000, np.full_like(SYNTHIA_IDS, 7)], axis=-1)
    save_png16_rgb(root / "GT" / "LABELS" / "0000000.png", rgb)
    return [root / "GT" / "LABELS" / "0000000_labelTrainIds.png"]


URBANSYN_IDS = id_map(list(URBANSYN_EXPECTED))


def make_urbansyn(root: Path) -> list[Path]:
    for i in (1, 2):
        save_image(root / "rgb" / f"rgb_{i:04d}.png", i)
        save_grey(root / "ss" / f"ss_{i:04d}.png", URBANSYN_IDS)
    return [root / "ss" / f"ss_{i:04d}_labelTrainIds.png" for i in (1, 2)]


def make_cityscapes(root: Path) -> list[Path]:
    outputs = []
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
        save_grey(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", GTA_IDS)
        (root / "gtFine" / split / city / f"{stem}_gtFine_polygons.json").write_text("{}")
        outputs.append(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")
    return outputs


MAPILLARY_IDS = id_map(list(MAPILLARY_EXPECTED), block=2)  # 2×2 squares: halving keeps one id per square


def make_mapillary(root: Path, split: str = "validation") -> list[Path]:
    out = {"validation": "val", "training": "train"}[split]
    outputs = []
    for i, stem in enumerate(("aBcD", "xYz0")):
        save_image(root / split / "images" / f"{stem}.jpg", i)
        save_palette(root / split / "v1.2" / "labels" / f"{stem}.png", MAPILLARY_IDS)
        outputs += [root / "half" / f"{out}_img" / f"{stem}.png", root / "half" / f"{out}_label" / f"{stem}.png"]
    return outputs


ACDC_SEQ = "GOPR0475"


def acdc_frame(root: Path, kind: str, cond: str, split: str, suffix: str) -> Path:
    return root / kind / cond / split / ACDC_SEQ / f"{ACDC_SEQ}_frame_000041{suffix}"


def make_acdc(root: Path) -> list[Path]:
    """Label ids for fog/rain/snow; night also ships its trainIds (all 5: valid, and unlike a conversion)."""
    outputs = []
    for cond in acdc.CONDITIONS:
        for split in acdc.SPLITS:
            save_image(acdc_frame(root, "rgb_anon", cond, split, "_rgb_anon.png"))
            if split == "test":
                continue
            save_grey(acdc_frame(root, "gt", cond, split, "_gt_labelIds.png"), GTA_IDS)
            outputs.append(acdc_frame(root, "gt", cond, split, "_gt_labelTrainIds.png"))
            if cond == "night":
                save_grey(outputs[-1], np.full((H, W), 5, np.uint8))
    return outputs


# ---------------------------------------------------------------------------------------------------- mapping
def test_lut_remap_unknown_ids_become_ignore():
    lut = build_lut({3: 0, 7: 18})
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    np.testing.assert_array_equal(remap(np.array([[3, 7, 4, 0]], np.uint8), lut), [[0, 18, 255, 255]])
    np.testing.assert_array_equal(remap(np.array([3, 7, 300, 65535], np.uint16), lut), [0, 18, 255, 255])
    with pytest.raises(ValueError, match="cannot map id 300"):
        build_lut({300: 1})


def test_gta5_palette_and_grey_labels(tmp_path, capsys):
    outputs = make_gta(tmp_path)
    summary = gta5.convert_gta5(tmp_path)
    assert (summary.converted, summary.skipped) == (2, 0)
    np.testing.assert_array_equal(read_grey(outputs[0]), expected(GTA_IDS, CITYSCAPES_EXPECTED))
    np.testing.assert_array_equal(read_grey(outputs[1]), expected(GTA_IDS[::-1], CITYSCAPES_EXPECTED))
    assert read_grey(outputs[0])[0, 0] == 0 and GTA_IDS[0, 0] == 7  # road
    assert "GTA5: converted 2, skipped 0 (already done)" in capsys.readouterr().out


def test_synthia_16bit_first_channel(tmp_path):
    (out,) = make_synthia(tmp_path)
    assert synthia.convert_synthia(tmp_path).converted == 1
    label = read_grey(out)
    np.testing.assert_array_equal(label, expected(SYNTHIA_IDS, SYNTHIA_EXPECTED))
    assert not np.isin(label, [9, 14, 16]).any()  # terrain, truck, train are never produced


def test_urbansyn_train_ids_with_unlabelled_19(tmp_path):
    outputs = make_urbansyn(tmp_path)
    assert urbansyn.convert_urbansyn(tmp_path).converted == 2
    for out in outputs:
        np.testing.assert_array_equal(read_grey(out), expected(URBANSYN_IDS, URBANSYN_EXPECTED))


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    outputs = make_cityscapes(tmp_path)
    assert cityscapes.convert_cityscapes(tmp_path).converted == 2
    for out in outputs:
        np.testing.assert_array_equal(read_grey(out), expected(GTA_IDS, CITYSCAPES_EXPECTED))


def test_mapillary_maps_65_to_19_and_halves(tmp_path):
    outputs = make_mapillary(tmp_path)
    assert mapillary.convert_mapillary(tmp_path).converted == 2
    image_out, label_out = outputs[:2]
    label = read_grey(label_out)
    assert label.shape == (H // 2, W // 2)
    np.testing.assert_array_equal(label, expected(MAPILLARY_IDS[::2, ::2], MAPILLARY_EXPECTED))
    source = cv2.imread(str(tmp_path / "validation" / "images" / "aBcD.jpg")).astype(float)
    halved = cv2.imread(str(image_out))
    assert halved.shape == (H // 2, W // 2, 3)
    np.testing.assert_allclose(halved, source.reshape(H // 2, 2, W // 2, 2, 3).mean(axis=(1, 3)), atol=1)


def test_mapillary_training_split(tmp_path):
    outputs = make_mapillary(tmp_path, "training") + make_mapillary(tmp_path, "validation")
    assert mapillary.convert_mapillary(tmp_path, split=["training", "validation"]).converted == 4
    assert all(p.is_file() for p in outputs)
    assert {p.parent.name for p in outputs} == {"train_img", "train_label", "val_img", "val_label"}


def rein_rule(name: str) -> int:
    """The name rules of Rein's mapillary2cityscape.py (--train_id), restated to check our table."""
    classes = ["road", "sidewalk", "building", "wall", "fence", "pole", "trafficlight", "trafficsign", "vegetation",
               "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    key = name.lower().replace(" ", "").replace("-", "")
    rules = [(lambda k: k in classes, None), (lambda k: "trafficsign" in k or "front" in k or "back" in k, 7),
             (lambda k: "onrail" in k, 16), (lambda k: "cyclist" in k or "rider" in k, 12),
             (lambda k: "pole" in k or "streetlight" in k, 5), (lambda k: "curb" in k or "pedestrianarea" in k, 1),
             (lambda k: any(s in k for s in ("crosswalkplain", "parking", "bikelane", "servicelane",
                                             "lanemarking")), 0)]
    for matches, train_id in rules:
        if matches(key):
            return classes.index(key) if train_id is None else train_id
    return 255


def test_mapillary_table_follows_rein_rules():
    assert len(mapillary.MAPILLARY_V12_CLASSES) == 66
    for i, (name, train_id) in enumerate(mapillary.MAPILLARY_V12_CLASSES):
        assert train_id == rein_rule(name), (i, name)
    mapped = {t for _, t in mapillary.MAPILLARY_V12_CLASSES} - {255}
    assert mapped == set(range(19))


def test_mapillary_config_names_are_checked(tmp_path):
    make_mapillary(tmp_path)
    labels = [{"readable": name} for name, _ in mapillary.MAPILLARY_V12_CLASSES]
    (tmp_path / "config_v1.2.json").write_text(json.dumps({"labels": labels}))
    assert mapillary.convert_mapillary(tmp_path).converted == 2
    labels[13]["readable"] = "Dirt Road"
    (tmp_path / "config_v1.2.json").write_text(json.dumps({"labels": labels}))
    with pytest.raises(ValueError, match="Dirt Road"):
        mapillary.convert_mapillary(tmp_path)


def test_acdc_writes_missing_and_validates_shipped(tmp_path, capsys):
    outputs = make_acdc(tmp_path)
    shipped = [p for p in outputs if "/night/" in p.as_posix()]
    stamps = {p: p.stat().st_mtime_ns for p in shipped}
    summary = acdc.convert_acdc(tmp_path)
    assert (summary.converted, summary.skipped, summary.validated) == (6, 2, 2)
    for out in outputs:
        want = np.full((H, W), 5) if out in shipped else expected(GTA_IDS, CITYSCAPES_EXPECTED)
        np.testing.assert_array_equal(read_grey(out), want)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in shipped)  # validated, not rewritten
    assert "ACDC: converted 6, skipped 2 (already done); validated 2" in capsys.readouterr().out
    assert not list((tmp_path / "gt").rglob("*test*"))  # nothing written for the label-less test split


def test_acdc_rejects_bad_shipped_train_ids(tmp_path):
    make_acdc(tmp_path)
    bad = acdc_frame(tmp_path, "gt", "snow", "val", "_gt_labelTrainIds.png")
    save_grey(bad, np.full((H, W), 33, np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}.*values \[33\] that are not Cityscapes trainIds"):
        acdc.convert_acdc(tmp_path)


# ---------------------------------------------------------------------------------------------------- idempotence
CASES: dict[str, tuple[Callable[[Path], list[Path]], Callable[..., Summary]]] = {
    "gta5": (make_gta, gta5.convert_gta5),
    "synthia": (make_synthia, synthia.convert_synthia),
    "urbansyn": (make_urbansyn, urbansyn.convert_urbansyn),
    "cityscapes": (make_cityscapes, cityscapes.convert_cityscapes),
    "mapillary": (make_mapillary, mapillary.convert_mapillary),
    "acdc": (make_acdc, acdc.convert_acdc),
}


@pytest.mark.parametrize("name", CASES)
def test_second_run_skips_everything(name, tmp_path, capsys):
    make, convert = CASES[name]
    outputs = make(tmp_path)
    first = convert(tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in outputs}
    capsys.readouterr()
    second = convert(tmp_path)
    assert second.converted == 0 and second.skipped == first.converted + first.skipped > 0
    assert f"converted 0, skipped {second.skipped} (already done)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in outputs} == stamps
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("name", ["gta5", "mapillary"])
def test_killed_writer_leaves_no_partial_file(name, tmp_path, monkeypatch):
    """The second write dies after writing some bytes to its (temporary) path: no final or temp file remains."""
    make, convert = CASES[name]
    outputs = make(tmp_path)
    real_imwrite, calls = cv2.imwrite, []

    def dying_imwrite(path, array, *args):
        calls.append(Path(path))
        if len(calls) == 2:
            Path(path).write_bytes(b"\x89PNG\r\n\x1a\n half a PNG")
            raise KeyboardInterrupt  # what Ctrl-C raises mid-write
        return real_imwrite(path, array, *args)

    monkeypatch.setattr(cv2, "imwrite", dying_imwrite)
    with pytest.raises(KeyboardInterrupt):
        convert(tmp_path)
    assert calls[1].name.startswith(".") and calls[1].parent == outputs[1].parent  # it wrote to a temporary
    assert outputs[0].is_file() and not outputs[1].exists()
    assert cv2.imread(str(outputs[0]), cv2.IMREAD_UNCHANGED) is not None
    assert not temp_files(tmp_path)

    monkeypatch.setattr(cv2, "imwrite", real_imwrite)
    summary = convert(tmp_path)
    assert all(p.is_file() for p in outputs)
    assert summary.converted + summary.skipped == len(outputs) // (2 if name == "mapillary" else 1)


def test_next_run_removes_temporaries_of_a_killed_run(tmp_path):
    """A SIGKILL leaves atomic_path's temporary behind; the next run deletes it and never takes it for input."""
    outputs = make_gta(tmp_path)
    stale = tmp_path / "labels" / ".00000_labelTrainIds.k3x_9q2z.tmp.png"
    stale.write_bytes(b"\x89PNG half")
    summary = gta5.convert_gta5(tmp_path)
    assert (summary.converted, summary.removed_partial) == (2, 1)
    assert not stale.exists() and all(p.is_file() for p in outputs)


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name, folder", [
    ("gta5", "images"), ("synthia", "RGB"), ("urbansyn", "rgb"), ("cityscapes", "leftImg8bit/train"),
    ("mapillary", "validation/images"), ("acdc", "rgb_anon/fog/train"),
])
def test_missing_folder_is_named(name, folder, tmp_path):
    with pytest.raises(LayoutError, match=rf"expected .* in {re.escape(str(tmp_path / folder))} \(download from http"):
        CASES[name][1](tmp_path)


def test_missing_label_folder_is_named(tmp_path):
    save_image(tmp_path / "images" / "00000.png")
    with pytest.raises(LayoutError, match=rf"expected GTA5 labels .* in {re.escape(str(tmp_path / 'labels'))} "):
        gta5.convert_gta5(tmp_path)
    make_acdc(tmp_path / "acdc")
    for p in (tmp_path / "acdc" / "gt" / "rain" / "val").rglob("*.png"):
        p.unlink()
    with pytest.raises(LayoutError, match=r"ACDC rain val labels .* found none"):
        acdc.convert_acdc(tmp_path / "acdc")


def test_cityscapes_polygons_only(tmp_path):
    make_cityscapes(tmp_path)
    for p in (tmp_path / "gtFine" / "val").rglob("*_labelIds.png"):
        p.unlink()
    with pytest.raises(LayoutError, match="found only 1 polygon jsons"):
        cityscapes.convert_cityscapes(tmp_path)


def test_wrong_label_formats_are_refused(tmp_path):
    make_gta(tmp_path / "gta")
    colour = np.zeros((H, W, 3), np.uint8)
    Image.fromarray(colour).save(tmp_path / "gta" / "labels" / "00001.png")
    with pytest.raises(ValueError, match=r"00001.png' is an RGB colour image; expected single-channel class ids"):
        gta5.convert_gta5(tmp_path / "gta")

    make_synthia(tmp_path / "synthia")
    save_grey(tmp_path / "synthia" / "GT" / "LABELS" / "0000000.png", SYNTHIA_IDS % 256)
    with pytest.raises(ValueError, match="has 1 channel of 8 bits; expected the 16-bit 3-channel"):
        synthia.convert_synthia(tmp_path / "synthia")

    make_urbansyn(tmp_path / "urbansyn")
    save_grey(tmp_path / "urbansyn" / "ss" / "ss_0002.png", np.full((H, W), 26, np.uint8))
    with pytest.raises(ValueError, match=r"ss_0002.png' holds values \[26\]"):
        urbansyn.convert_urbansyn(tmp_path / "urbansyn")

    make_mapillary(tmp_path / "mapillary")
    save_palette(tmp_path / "mapillary" / "validation" / "v1.2" / "labels" / "xYz0.png", id_map([13, 120]))
    with pytest.raises(ValueError, match="holds ids up to 120; v1.2 labels have ids 0–65"):
        mapillary.convert_mapillary(tmp_path / "mapillary")
    assert not temp_files(tmp_path)


# ---------------------------------------------------------------------------------------------------- command line
@pytest.mark.slow  # a subprocess run of the tool's command line
def test_command_line(tmp_path, capsys):
    outputs = make_gta(tmp_path)
    result = subprocess.run([sys.executable, "tools/convert_datasets/gta5.py", str(tmp_path), "--nproc", "2"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "GTA5: converted 2, skipped 0 (already done)" in result.stdout
    np.testing.assert_array_equal(read_grey(outputs[0]), expected(GTA_IDS, CITYSCAPES_EXPECTED))

    assert gta5.main([str(tmp_path / "nowhere")]) == 1
    assert f"error: expected GTA5 images in {tmp_path / 'nowhere' / 'images'}" in capsys.readouterr().err
    assert mapillary.main([str(tmp_path), "--nproc", "1", "--split", "validation"]) == 1
    with pytest.raises(SystemExit):
        gta5.main([str(tmp_path), "--nproc", "0"])


def test_multiprocess_run_matches(tmp_path):
    outputs = make_cityscapes(tmp_path)
    assert cityscapes.convert_cityscapes(tmp_path, nproc=2).converted == 2
    for out in outputs:
        np.testing.assert_array_equal(read_grey(out), expected(GTA_IDS, CITYSCAPES_EXPECTED))
