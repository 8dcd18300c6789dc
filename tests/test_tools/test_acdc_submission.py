"""tools/acdc_submission.py: one trainId PNG per ACDC test image at the config's ACDC test resolution, and the zip.

The tiny run's config is a Cityscapes one, so the tests derive from it a config whose test dataloader is, as in
configs/_base_/datasets/citys2acdc_512.py, a ConcatDataset of DGACDCDataset entries with a Resize (here a tiny one).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONDITIONS = {"fog": "GOPR0475", "night": "GOPR0351"}  # the sequence of each condition, named as ACDC's are
WIDTH, HEIGHT = 64, 32
TEST_SCALE = (96, 48)  # upsampled: predictions must still come back at the input's size


def make_acdc_test_layout(root: Path) -> dict[str, list[Path]]:
    """``root/rgb_anon/<cond>/test/<seq>/<seq>_frame_<n>_rgb_anon.png``, two images per condition."""
    rng = np.random.default_rng(1)
    images = {}
    for condition, sequence in CONDITIONS.items():
        folder = root / "rgb_anon" / condition / "test" / sequence
        folder.mkdir(parents=True)
        images[condition] = []
        for index in range(2):
            image = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            image[HEIGHT // 2:] //= 4  # some structure, so that predictions are not constant by construction
            path = folder / f"{sequence}_frame_{index:06d}_rgb_anon.png"
            Image.fromarray(image).save(path)
            images[condition].append(path)
    return images


def acdc_config(base: Path, data_root: Path, path: Path) -> Path:
    """The tiny run's config with an ACDC test dataloader (two conditions) at ``TEST_SCALE``."""
    pipeline = (f'[dict(type="LoadImageFromFile"), dict(type="Resize", scale={TEST_SCALE}, keep_ratio=True), '
                f'dict(type="LoadAnnotations"), dict(type="PackSegInputs")]')
    entries = ", ".join(f'dict(type="DGACDCDataset", condition="{c}", data_root="{data_root}", test_mode=True, '
                        f'pipeline={pipeline})' for c in CONDITIONS)
    dataset = f'dict(_delete_=True, type="ConcatDataset", datasets=[{entries}])'
    path.write_text(f'_base_ = ["{base}"]\ntest_dataloader = dict(dataset={dataset})\n')
    return path


def varied_checkpoint(trained: Path, path: Path) -> Path:
    """The tiny run's trained checkpoint with its head's weights shaken: the tiny head predicts one class
    everywhere, which would not show a wrong id mapping or a wrong test resolution."""
    import torch

    from soma.utils import load_trusted_checkpoint

    checkpoint = load_trusted_checkpoint(trained)
    generator = torch.Generator().manual_seed(0)
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("decode_head.") and value.is_floating_point() and value.ndim >= 1:
            value.add_(0.5 * torch.randn(value.shape, generator=generator))
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def acdc(tiny_run, tmp_path_factory):
    """The layout, the derived config, a checkpoint with varied predictions and its trainId prediction of every
    image (the reference)."""
    from mmseg.apis import inference_model, init_model

    root = tmp_path_factory.mktemp("acdc")
    images = make_acdc_test_layout(root / "acdc")
    config = acdc_config(tiny_run.config, root / "acdc", root / "acdc_tiny.py")
    checkpoint = varied_checkpoint(tiny_run.trained, root / "varied.pth")
    model = init_model(str(config), str(checkpoint), device="cpu")  # mmseg's own, independent of the tool
    files = [p for paths in images.values() for p in paths]

    def predict(pipeline):
        model.cfg.test_pipeline = pipeline
        return {p.name: inference_model(model, str(p)).pred_sem_seg.data[0].numpy() for p in files}

    # Written out here, not taken from the tool: the resolution must be the config's ACDC Resize.
    reference = predict([dict(type="LoadImageFromFile"), dict(type="Resize", scale=TEST_SCALE, keep_ratio=True),
                         dict(type="PackSegInputs")])
    unresized = predict([dict(type="LoadImageFromFile"), dict(type="PackSegInputs")])
    assert len(np.unique(np.stack(list(reference.values())))) >= 3  # several classes: the mapping is checked
    assert any((reference[n] != unresized[n]).any() for n in reference)  # the resolution shows in the output
    return dict(root=root / "acdc", config=config, checkpoint=checkpoint, images=images, reference=reference)


def read_png(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "L"  # one 8-bit channel: the class ids themselves, no palette or colours
    return np.asarray(image)


def test_one_train_id_png_per_image_and_the_zip(acdc, tiny_run, tmp_path):
    from soma.apis.acdc_submission import make_submission

    result = make_submission(acdc["config"], acdc["checkpoint"], tmp_path / "out", data_root=acdc["root"],
                             conditions=list(CONDITIONS))
    assert result.test_scale == TEST_SCALE
    assert {c: [p.name for p in files] for c, files in result.files.items()} == {
        c: [p.name for p in paths] for c, paths in acdc["images"].items()}  # the image's own name, sorted
    pred_dir = tmp_path / "out" / "labelTrainIds"
    assert sorted(p.name for p in pred_dir.iterdir()) == sorted(acdc["reference"])  # flat, nothing else
    for name, reference in acdc["reference"].items():
        labels = read_png(pred_dir / name)
        assert labels.shape == (HEIGHT, WIDTH)  # the input's size, though inferred at 96x48
        np.testing.assert_array_equal(labels, reference)
        assert labels.max() < 19

    assert result.zip_path == tmp_path / "out" / "acdc_test_submission.zip"
    with zipfile.ZipFile(result.zip_path) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == sorted(f"labelTrainIds/{name}" for name in acdc["reference"])
        for name in acdc["reference"]:
            assert archive.read(f"labelTrainIds/{name}") == (pred_dir / name).read_bytes()

    # A second run into the same folder, one condition: files replaced, the other condition's gone from both.
    before = {name: (pred_dir / name).stat().st_mtime_ns for name in acdc["reference"]}
    result = make_submission(acdc["config"], acdc["checkpoint"], tmp_path / "out", data_root=acdc["root"],
                             conditions=["fog"], force=True)
    fog = sorted(p.name for p in acdc["images"]["fog"])
    assert result.removed_stale == 2
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == sorted(
        fog + ["acdc_test_submission.zip"])  # no temporary files left behind
    for name in fog:
        assert (pred_dir / name).stat().st_mtime_ns >= before[name]
        np.testing.assert_array_equal(read_png(pred_dir / name), acdc["reference"][name])
    with zipfile.ZipFile(result.zip_path) as archive:
        assert sorted(archive.namelist()) == [f"labelTrainIds/{name}" for name in fog]


def test_label_ids_option_maps_through_cityscapesscripts(acdc, tiny_run, tmp_path, capsys):
    from cityscapesscripts.helpers.labels import labels as cs_labels

    from soma.apis.acdc_submission import main

    main([str(acdc["config"]), str(acdc["checkpoint"]), "--out", str(tmp_path / "out"), "--data-root",
          str(acdc["root"]), "--conditions", *CONDITIONS, "--device", "cpu", "--label-ids"])
    printed = capsys.readouterr().out
    assert "fog        2 images" in printed and "night      2 images" in printed
    assert f"upload: {tmp_path / 'out' / 'acdc_test_submission.zip'}" in printed
    evaluated_ids = {label.id for label in cs_labels if not label.ignoreInEval}
    train_to_id = {label.trainId: label.id for label in cs_labels if not label.ignoreInEval}
    assert len(evaluated_ids) == 19
    for name, reference in acdc["reference"].items():
        labels = read_png(tmp_path / "out" / "labelIds" / name)
        assert set(np.unique(labels)) <= evaluated_ids
        np.testing.assert_array_equal(labels, np.vectorize(train_to_id.get)(reference))
    with zipfile.ZipFile(tmp_path / "out" / "acdc_test_submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"labelIds/{name}" for name in acdc["reference"])
        for name, reference in acdc["reference"].items():
            with archive.open(f"labelIds/{name}") as member:
                np.testing.assert_array_equal(read_png(member), np.vectorize(train_to_id.get)(reference))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["acdc_test_submission.zip", "labelIds"]


def test_errors(acdc, tiny_run, tmp_path, capsys):
    from soma.apis.acdc_submission import make_submission
    from soma.apis.acdc_submission import main

    with pytest.raises(SystemExit, match=r"rgb_anon/rain/test' does not exist"):
        main([str(acdc["config"]), str(tiny_run.trained), "--out", str(tmp_path / "out"), "--data-root",
              str(acdc["root"]), "--conditions", "fog", "rain"])
    assert not (tmp_path / "out").exists()  # checked before anything is written
    with pytest.raises(ValueError, match="no DGACDCDataset in its test_dataloader"):
        make_submission(tiny_run.config, tiny_run.trained, tmp_path / "out", data_root=acdc["root"])
    with pytest.raises(FileNotFoundError, match="no_such_config.py"):
        make_submission(tmp_path / "no_such_config.py", tiny_run.trained, tmp_path / "out")


def test_a_merged_checkpoint_is_loaded_into_the_backbone_without_adapters(acdc, tiny_run, tmp_path):
    """tools/merge_adapter.py's plain weights: the test loop builds the config's backbone with ``peft=None``."""
    from soma.apis.acdc_submission import make_submission

    merged = varied_checkpoint(tiny_run.merged, tmp_path / "merged_varied.pth")  # the same head as the reference
    result = make_submission(acdc["config"], merged, tmp_path / "out", data_root=acdc["root"], conditions=["fog"])
    for path in result.files["fog"]:
        same = read_png(path) == acdc["reference"][path.name]
        assert same.mean() > 0.99  # merging changes the weights by rounding only
