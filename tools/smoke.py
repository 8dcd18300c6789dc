"""Smoke job: build the demo-size SoMA Mask2Former from its config and train it a few steps on a fixed batch.

    python tools/smoke.py [--config configs/demo/mask2former_dinov2-tiny_soma.py] [--steps 10]

Prints the trainable-parameter summary and the loss per step; exits non-zero if the loss does not decrease.
"""
from __future__ import annotations

import argparse
import sys

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

from soma.utils import check_config_types


def synthetic_batch(size: int, num_images: int = 2) -> dict:
    """Images whose halves differ in brightness, labelled by half: a task a few steps can start to learn."""
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(num_images):
        image = torch.randint(0, 255, (3, size, size), generator=generator, dtype=torch.uint8)
        image[:, size // 2:] //= 4
        label = torch.zeros(1, size, size, dtype=torch.long)
        label[:, size // 2:] = 1
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        inputs.append(image)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo/mask2former_dinov2-tiny_soma.py")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(args.config)
    check_config_types(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)))
    batch = synthetic_batch(cfg.crop_size[0])
    model.train()
    losses = []
    for step in range(args.steps):
        losses.append(float(model.train_step(batch, optim_wrapper)["loss"].detach()))
        print_log(f"step {step + 1}/{args.steps}: loss {losses[-1]:.3f}", logger="current")
    ok = losses[-1] < losses[0]
    print_log(f"smoke {'OK' if ok else 'FAILED'}: loss {losses[0]:.3f} -> {losses[-1]:.3f}", logger="current")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
