"""Pretrain the demo's small ViT: the stand-in for a foundation model, trained here in about a minute.

The model is the ``"demo"`` arch of our DINOv2 backbone (timm ViT, patch 8, 128 wide, 6 blocks). It learns
supervised segmentation of *coarse* categories (flat, construction, nature, sky, objects) on scenes that are
re-rendered at every step with random class colours and photometric jitter — many looks, but never night or
fog. Fine-tuning must then learn the finer classes without forgetting what made these features robust, which
is what SoMA is for. The weights are saved in the format of ``tools/convert_models/dinov2.py`` (the timm state
dict under ``state_dict``, plus ``meta``), so the demo configs load them exactly like converted DINOv2 weights.

The method study (``tools/demo/run.py --study``) pretrains with ``styles="varied"``: each scene is also given a
random global look (darkened with a colour tint, hazed towards a random grey, desaturated, gamma, noise), so that
the features are robust to style and there is something for fine-tuning to keep or lose. The study's test styles
(night with lamp glows, depth-dependent fog, the palette city) are not among these renderings.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from ..models.backbones import DINOv2
from ..utils import save_checkpoint_atomic

from .scenes import COARSE_OF_TRAINID, IGNORE_INDEX, NUM_COARSE, make_layout, random_colours, render

ARCH = "demo"
PATCH_SIZE = 8
IMAGE_SIZE = 64
# ImageNet statistics, as the demo configs' data preprocessor uses them.
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
PretrainStyles = Literal["recoloured", "varied"]


def build_vit() -> nn.Module:
    """The timm model behind ``DINOv2(arch="demo", patch_size=8, img_size=64)``."""
    model_name, arch_kwargs, _ = DINOv2.arch_zoo[ARCH]
    return timm.create_model(model_name, pretrained=False, num_classes=0, img_size=IMAGE_SIZE,
                             patch_size=PATCH_SIZE, **arch_kwargs)


def _coarse_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for train_id, coarse in COARSE_OF_TRAINID.items():
        lut[train_id] = coarse
    return lut


def random_look(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (float RGB) in a random global style: each of darkening with a colour tint, haze towards a random
    grey, desaturation and a gamma curve with some probability, then sensor noise of a random strength."""
    if rng.random() < 0.4:
        image = image * rng.uniform(0.1, 0.6) * rng.uniform(0.5, 1.0, 3)
    if rng.random() < 0.4:
        strength = rng.uniform(0.2, 0.75)
        image = image * (1 - strength) + rng.uniform(80, 230) * strength
    if rng.random() < 0.25:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.5:
        image = 255 * (np.clip(image, 0, 255) / 255) ** rng.uniform(0.5, 2.0)
    return image + rng.normal(0.0, rng.uniform(0, 15), image.shape)


def make_batch(rng: np.random.Generator, batch_size: int,
               styles: PretrainStyles = "recoloured") -> tuple[torch.Tensor, torch.Tensor]:
    """Freshly rendered scenes with random colours and photometric jitter (``"varied"``: and a random global look,
    :func:`random_look`), and their coarse labels."""
    lut = _coarse_lut()
    images, labels = [], []
    for _ in range(batch_size):
        layout = make_layout(rng, IMAGE_SIZE)
        image = render(layout, "source", rng, colours=random_colours(rng)).astype(np.float32)
        if styles == "varied":
            image = random_look(image, rng)
        image = image * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40, 3)  # contrast and colour shift
        if rng.random() < 0.5:
            image, layout = image[:, ::-1], layout[:, ::-1]
        images.append(np.clip(image, 0, 255))
        labels.append(lut[layout])
    inputs = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (inputs - MEAN) / STD, torch.from_numpy(np.stack(labels)).long()


def warmup_fraction(steps: int) -> float:
    """OneCycleLR's ``pct_start``: 10 % of the steps (exactly 0.1 for multiples of 10), at least 2 steps, since
    torch divides by zero on a warm-up of exactly 1 step (10 steps at 0.1); runs too short for that keep 0.1."""
    return max(2, round(0.1 * steps)) / steps if steps >= 3 else 0.1


def pretrain(out: str | Path, steps: int = 300, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
             styles: PretrainStyles = "recoloured") -> Path:
    """Pretrain the demo ViT and save it to ``out`` (skipped when ``out`` exists). Returns ``out``.

    Args:
        styles: ``"recoloured"`` (the default demo: random class colours and jitter) or ``"varied"`` (the study:
            also a random global look per scene, :func:`random_look`).
    """
    if styles not in ("recoloured", "varied"):
        raise ValueError(f"`styles` must be 'recoloured' or 'varied', got {styles!r}.")
    if steps < 1:
        raise ValueError(f"`steps` must be a positive int, got {steps}.")
    out = Path(out)
    if out.is_file():
        print_log(f"pretrained demo ViT: using the cached {out}", logger="current")
        return out
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    vit = build_vit()
    head = nn.Linear(vit.embed_dim, NUM_COARSE)
    params = list(vit.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=warmup_fraction(steps))
    grid = IMAGE_SIZE // PATCH_SIZE
    start = time.perf_counter()
    for step in range(steps):
        inputs, labels = make_batch(rng, batch_size, styles)
        tokens = vit.forward_features(inputs)[:, vit.num_prefix_tokens:]  # (B, grid², C)
        logits = head(tokens).transpose(1, 2).reshape(batch_size, NUM_COARSE, grid, grid)
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % 50 == 0 or step == 0:
            accuracy = (logits.argmax(1) == labels).float().mean()
            print_log(f"pretrain step {step + 1}/{steps}: loss {loss.item():.3f}, coarse pixel accuracy "
                      f"{accuracy.item():.3f} ({time.perf_counter() - start:.0f} s)", logger="current")
    meta = dict(family="DINOv2", arch=ARCH, patch_size=PATCH_SIZE, img_size=IMAGE_SIZE, steps=steps,
                source="soma/demo/pretrain.py (coarse-category segmentation of generated scenes)")
    if styles != "recoloured":  # the default demo's meta stays as it was
        meta["styles"] = styles
    save_checkpoint_atomic({"state_dict": vit.state_dict(), "meta": meta}, out)
    print_log(f"saved the pretrained demo ViT to {out}", logger="current")
    return out
