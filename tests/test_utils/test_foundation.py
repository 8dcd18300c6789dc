"""Registration, the weights_only policy and helpful errors for misspelt config types."""
import pytest
import torch
from mmengine.config import Config

from soma.config import UnknownTypeError, check_config_types
from soma.utils import load_trusted_checkpoint, load_weights

from ..conftest import MODEL_BASE


def test_backbones_registered_in_mmseg_and_mmdet():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    for name in ("DINOv2", "EVA02"):
        assert SEG.get(name) is DET.get(name) is not None
    assert SEG.get("SoMAEncoderDecoder") is not None


def test_misspelt_type_names_close_matches():
    cfg = Config.fromfile(str(MODEL_BASE))
    check_config_types(cfg)  # the real config is fine
    cfg.model.backbone.type = "DINOv22"
    with pytest.raises(UnknownTypeError, match=r"'DINOv22' at `model.backbone.type`.*Did you mean: 'DINOv2'"):
        check_config_types(cfg)
    cfg.model.backbone.type = "DINOv2"
    cfg.model.decode_head.loss_cls.type = "mmdet.CrossEntropyLos"
    with pytest.raises(UnknownTypeError, match="CrossEntropyLoss"):
        check_config_types(cfg)


class NotATensor:
    pass


def test_runner_checkpoints_load_and_foreign_files_stay_safe(tmp_path):
    from mmengine.logging import HistoryBuffer

    # What mmengine's Runner writes: tensors plus Python objects that weights_only=True refuses.
    runner_ckpt = tmp_path / "iter_10.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "message_hub": {"log": HistoryBuffer([1.0, 2.0], [1, 1])},
                "meta": {"iter": 10}}, runner_ckpt)
    assert load_trusted_checkpoint(runner_ckpt)["meta"]["iter"] == 10

    weights = tmp_path / "dinov2.pth"
    torch.save({"pos_embed": torch.zeros(1, 5, 8)}, weights)
    assert load_weights(weights)["pos_embed"].shape == (1, 5, 8)
    with pytest.raises(RuntimeError, match="holds Python objects"):
        load_weights(runner_ckpt)  # never unpickles code from a pretrained-weights path

    with pytest.raises(FileNotFoundError, match="checkpoints/README.md"):
        load_weights(tmp_path / "missing.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RuntimeError, match="truncated"):
        load_weights(broken)
    text = tmp_path / "notes.pth"
    text.write_text("abc")  # torch.load raises IndexError on this one (KeyError on longer text)
    with pytest.raises(RuntimeError, match="not a torch file"):
        load_weights(text)
