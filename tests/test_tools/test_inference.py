"""soma.apis.inference (tools/inference.py): coloured predictions of the input's size, the same for merged and
unmerged checkpoints."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ..conftest import REPO


def predictions(run, checkpoint, out_dir):
    from soma.apis.inference import run_inference

    written = run_inference(run.config, checkpoint, run.data / "leftImg8bit" / "val", out_dir)
    ids = {p.relative_to(out_dir / "pred"): np.asarray(Image.open(p)) for p in written if "pred" in p.parts}
    return written, ids


def test_palette_png_and_overlay_per_image(tiny_run, tmp_path):
    written, ids = predictions(tiny_run, tiny_run.trained, tmp_path / "out")
    assert len(ids) == 2 and len(written) == 4  # one class map and one overlay per image, sub-folders kept
    for relative, labels in ids.items():
        source = tiny_run.data / "leftImg8bit" / "val" / relative
        assert labels.shape == np.asarray(Image.open(source)).shape[:2]
        assert labels.max() < 19  # train ids of the 19 Cityscapes classes
        pred = Image.open(tmp_path / "out" / "pred" / relative)
        assert pred.mode == "P" and pred.getpalette()[:3] == [128, 64, 128]  # road's Cityscapes colour
        overlay = Image.open(tmp_path / "out" / "overlay" / relative)
        assert overlay.size == pred.size and overlay.mode == "RGB"


def test_merged_checkpoint_predicts_like_the_unmerged_one(tiny_run):
    """Compared on the class scores: the tiny untrained head predicts one class everywhere, so maps would not tell."""
    from mmseg.apis import inference_model

    from soma.peft import soma_layers
    from soma.apis.inference import init_model, read_image

    image = read_image(next((tiny_run.data / "leftImg8bit" / "val").rglob("*.png")))
    scores = {}
    for kind in ("trained", "merged", "untrained"):
        model = init_model(tiny_run.config, getattr(tiny_run, kind))
        assert bool(soma_layers(model)) == (kind != "merged")  # merged: plain Linear layers, no adapter cost
        assert model.dataset_meta["classes"][0] == "road"  # merged: no dataset_meta, the config's dataset names them
        scores[kind] = inference_model(model, image).seg_logits.data
    assert torch.allclose(scores["merged"], scores["trained"], atol=1e-4)
    assert not torch.allclose(scores["untrained"], scores["trained"], atol=1e-3)  # the adapters matter


def test_errors_name_the_file(tiny_run, tmp_path):
    from soma.apis.inference import run_inference

    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        run_inference(tiny_run.config, tiny_run.trained, tmp_path / "no_such_dir", tmp_path / "out")
    broken = tmp_path / "images" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        run_inference(tiny_run.config, tiny_run.trained, broken.parent, tmp_path / "out")
    with pytest.raises(ValueError, match="does not fit the config's model"):
        run_inference(tiny_run.config, tiny_run.base, tiny_run.data / "leftImg8bit" / "val", tmp_path / "out")


def test_detection_config_draws_boxes(tmp_path):
    """mmdet configs go through mmdet's init_detector and inference_detector: boxes drawn on an image of any size,
    the classes taken from the config's test dataset (the checkpoint has no dataset_meta)."""
    import warnings

    from soma.models import build_model
    from soma.apis.inference import Inferencer, init_model

    from ..test_detection.conftest import DWD_CLASSES, make_dwd_like
    from ..test_detection.tiny_config import TINY_DINO

    make_dwd_like(tmp_path / "dwd", num_train=1, num_test=1)
    config = tmp_path / "tiny_dino.py"
    config.write_text(TINY_DINO.format(repo=REPO, data=tmp_path / "dwd", iters=2))
    torch.save(dict(state_dict=build_model(str(config), pretrained=False).state_dict()), tmp_path / "det.pth")
    image = tmp_path / "images" / "street.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(image)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = init_model(config, tmp_path / "det.pth")
    assert not [w for w in caught if "checkpoint is None" in str(w.message)]  # we load the checkpoint ourselves
    assert tuple(model.dataset_meta["classes"]) == DWD_CLASSES and not model.training
    written = Inferencer(model, tmp_path / "out", score_thr=0.0)(image, Path("street.png"))
    assert written == [tmp_path / "out" / "boxes" / "street.png"]
    assert Image.open(written[0]).size == (80, 48)


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_command_line(tiny_run, tmp_path):
    image = next((tiny_run.data / "leftImg8bit" / "val").rglob("*.png"))
    result = subprocess.run([sys.executable, "tools/inference.py", str(tiny_run.config), str(tiny_run.merged),
                             str(image), "--out", str(tmp_path / "cli")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 2 files" in result.stdout
    assert (tmp_path / "cli" / "pred" / image.name).is_file()
