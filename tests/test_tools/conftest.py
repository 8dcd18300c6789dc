"""Shared by the inference and spectrum tests: one tiny SoMA run made in-process, in a few seconds.

The checkpoints have the layout tools/train.py writes (``state_dict`` + ``meta.dataset_meta``) and the merged one
is made by the real extract_adapter → merge_adapter round trip (soma.apis.adapters), on random "pretrained" base
weights loaded through the config's ``init_cfg`` (so the SVD split is taken as in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import REPO
from .test_train import CONFIG, make_cityscapes_like


@dataclass
class TinyRun:
    """Files of the tiny run: the config (Cityscapes-layout data under ``data``) and its checkpoints."""

    root: Path
    config: Path
    data: Path
    base: Path
    untrained: Path  # SoMA-initialised, adapters as the SVD split left them
    trained: Path  # lora_B moved (a stand-in for training), adapters unmerged
    merged: Path  # the trained one through extract_adapter + merge_adapter: plain backbone


def save_like_runner(model, path: Path) -> None:
    """Save ``model`` as mmengine's Runner does: weights under ``state_dict``, the dataset's metainfo in ``meta``."""
    import torch
    from mmseg.datasets import CityscapesDataset

    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(CityscapesDataset.METAINFO))), path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    import timm
    import torch

    from soma.models import build_model
    from soma.apis.adapters import extract_adapter, merge_adapter
    from soma.peft import soma_layers

    root = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    base = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56,
                             embed_dim=64, depth=4, num_heads=2)
    with torch.no_grad():  # timm initialises layer scales at 1e-5, which would hide any change of the blocks
        for name, param in base.named_parameters():
            if ".ls" in name:
                param.fill_(1.0)
    torch.save(base.state_dict(), root / "base.pth")
    make_cityscapes_like(root / "data", num_images=2)
    config = root / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=root / "data") + (
        f'model = dict(backbone=dict(init_cfg=dict(_delete_=True, type="Pretrained", '
        f'checkpoint="{root / "base.pth"}")))\n'))
    run = TinyRun(root=root, config=config, data=root / "data", base=root / "base.pth",
                  untrained=root / "untrained.pth", trained=root / "trained.pth", merged=root / "merged.pth")

    model = build_model(str(config), pretrained=True)
    save_like_runner(model, run.untrained)
    with torch.no_grad():  # large enough to change predictions, as training would
        for layer in soma_layers(model).values():
            layer.lora_B.add_(0.5 * torch.randn_like(layer.lora_B))
    save_like_runner(model, run.trained)
    extract_adapter(str(config), str(run.trained), str(root / "adapter.pth"))
    merge_adapter(str(config), str(root / "adapter.pth"), str(run.merged))
    return run
