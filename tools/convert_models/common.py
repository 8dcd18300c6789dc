"""Shared conversion of released ViT checkpoints into SoMA's backbone format.

Our format is the timm state dict of the family's timm model at its *native* patch size and grid (nothing
resampled), saved as ``{"state_dict": ..., "meta": {...}}``. The backbones resample the patch embedding and
position embedding to their own ``patch_size``/``img_size`` when they load it.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from soma.models.backbones import FoundationViT
from soma.utils import load_weights, save_checkpoint_atomic

log = logging.getLogger("soma.convert")


@dataclass(frozen=True)
class Family:
    """How to recognise and convert one model family."""

    backbone: type[FoundationViT]
    checkpoint_filter: Callable[[dict, torch.nn.Module], dict]
    native_patch: int
    example_key: str  # a key every checkpoint of the family has, for the error message
    # Backbone options read off the weights (e.g. DINOv2's register tokens); recorded in the meta data.
    detect_options: Callable[[dict], dict] = lambda state: {}


def unwrap(state: dict) -> dict[str, torch.Tensor]:
    """Strip the containers release files put around the weights."""
    for key in ("model_ema", "model", "module", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return state


def infer_arch(family: Family, state: dict[str, torch.Tensor], arch: str | None) -> str:
    """The arch whose embedding width and depth match the weights; refuses a contradicting ``arch``."""
    patch_keys = [k for k in state if k.endswith("patch_embed.proj.weight")]
    block_ids = {int(m.group(1)) for k in state if (m := re.search(r"(?:^|\.)blocks\.(\d+)\.", k))}
    if not patch_keys or not block_ids:
        raise ValueError(f"not a {family.backbone.__name__} checkpoint: expected keys like "
                         f"'patch_embed.proj.weight' and '{family.example_key}', found e.g. {sorted(state)[:5]}.")
    width, depth = state[patch_keys[0]].shape[0], max(block_ids) + 1
    candidates = list(family.backbone.arch_zoo)
    matches = [name for name in candidates if _arch_shape(family, name) == (width, depth)]
    if not matches:
        raise ValueError(f"no {family.backbone.__name__} arch has width {width} and depth {depth}; "
                         f"known archs: {candidates}.")
    if arch is not None and arch not in matches:
        raise ValueError(f"`--arch {arch}` contradicts the weights (width {width}, depth {depth} → {matches[0]}).")
    return arch or matches[0]


def _arch_shape(family: Family, arch: str) -> tuple[int, int]:
    """(embedding width, depth) of an arch, from its timm model built on the meta device."""
    import timm

    timm_name, kwargs, _ = family.backbone.arch_zoo[arch]
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    return model.embed_dim, len(model.blocks)


def native_img_size(state: dict[str, torch.Tensor], patch: int, prefix_tokens: int) -> int | None:
    """Image size whose patch grid matches the stored absolute position embedding (so nothing is resized)."""
    pos = next((v for k, v in state.items() if k.endswith("pos_embed") and v.dim() == 3), None)
    if pos is None:
        return None
    for prefix in (prefix_tokens, 0):
        grid = math.isqrt(pos.shape[1] - prefix)
        if grid * grid == pos.shape[1] - prefix:
            return grid * patch
    raise ValueError(f"position embedding with {pos.shape[1]} tokens is not a square grid.")


def convert(family: Family, src: Path, dst: Path, arch: str | None = None) -> dict:
    """Convert ``src`` (release or timm layout) into SoMA's format at ``dst``; returns the meta data.

    Raises:
        ValueError: unknown key layout, contradicting ``arch``, or weights the model needs are missing.
    """
    import timm

    state = unwrap(load_weights(src))
    arch = infer_arch(family, state, arch)
    backbone_kwargs = family.detect_options(state)
    timm_name, kwargs, _ = family.backbone.arch_zoo[arch]
    if backbone_kwargs.get("register_tokens"):
        timm_name = timm_name.replace("_dinov2", "_reg4_dinov2")
    probe = timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    img_size = native_img_size(state, family.native_patch, probe.num_prefix_tokens)
    model = timm.create_model(timm_name, pretrained=False, num_classes=0, patch_size=family.native_patch,
                              **({"img_size": img_size} if img_size else {}), **kwargs)
    filtered = family.checkpoint_filter(dict(state), model)
    result = model.load_state_dict(filtered, strict=False)
    if result.missing_keys:
        raise ValueError(f"'{src}' lacks {len(result.missing_keys)} weights of {timm_name} "
                         f"(e.g. {result.missing_keys[:5]}): is it a {family.backbone.__name__}-{arch} file?")
    dropped = sorted(set(state) - set(filtered)) + list(result.unexpected_keys)
    if dropped:
        log.warning("dropped %d keys the backbone does not use: %s", len(dropped), dropped[:10])
    meta = dict(family=family.backbone.__name__, arch=arch, timm_model=timm_name, img_size=img_size,
                patch_size=family.native_patch, source=Path(src).name, **backbone_kwargs)
    save_checkpoint_atomic({"state_dict": model.state_dict(), "meta": meta}, dst)
    log.info("wrote %s (%s-%s, %d tensors)", dst, family.backbone.__name__, arch, len(model.state_dict()))
    return meta


def build_parser(family: Family, description: str) -> argparse.ArgumentParser:
    """The command line shared by the converters."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("src", type=Path, help="release checkpoint (.pth/.pt/.bin) or timm state dict (.safetensors)")
    parser.add_argument("dst", type=Path, help="output file, e.g. checkpoints/dinov2_vitl14_converted.pth")
    parser.add_argument("--arch", choices=sorted(family.backbone.arch_zoo), help="checked against the weights")
    return parser


def main(family: Family, description: str, argv: Sequence[str] | None = None) -> int:
    """Command line of a converter: convert, turning user errors into a one-line message and exit code 1."""
    args = build_parser(family, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(family, args.src, args.dst, args.arch)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        log.error("error: %s", exc)
        return 1
    return 0
