"""Convert a DINOv2 checkpoint into SoMA's backbone format.

    python tools/convert_models/dinov2.py SRC DST [--arch small|base|large|giant] [--register-tokens 0|4]
                                          [--patch-resample bicubic|pinv] [--patch-size 16]
    python tools/convert_models/dinov2.py dinov2_vitl14_pretrain.pth checkpoints/dinov2_vitl14_converted.pth
    # the kernel the published SoMA numbers were obtained with (the official converter's bicubic 14 -> 16):
    python tools/convert_models/dinov2.py dinov2_vitl14_pretrain.pth \
        checkpoints/dinov2_vitl14_patch16-bicubic.pth --patch-resample bicubic

Accepts the official ``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`` releases, timm ``vit_*_patch14_dinov2``
state dicts (``.pth`` or ``.safetensors``) and transformers ``Dinov2Model``/``Dinov2WithRegistersModel``
checkpoints (``facebook/dinov2-*``: a ``save_pretrained`` folder or its ``model.safetensors``). The arch and the
register tokens are read off the shapes; ``--arch`` and ``--register-tokens`` are checked against them.
:func:`~soma.models.backbones.checkpoint_filters.dinov2_to_timm`
converts them (the transformers keys into the official ones,
then timm's ``vision_transformer.checkpoint_filter_fn``: register tokens, the giant's ``mlp.w12``/``mlp.w3``)
and the iBOT ``mask_token`` is dropped.
``--patch-resample`` is explained in :mod:`soma.convert.models.patch_kernel`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from soma.models import DINOv2

from soma.models.backbones import hf_layouts
from .family import Family, Option
from .cli import main as run_converter
from soma.models.backbones.checkpoint_filters import dinov2_to_timm

REGISTER_TOKEN_COUNTS = (0, 4)


def count_register_tokens(state: Mapping[str, torch.Tensor]) -> int:
    """Register tokens in an official (``register_tokens``) or timm (``reg_token``) state dict; 0 without.

    Raises:
        ValueError: a count no DINOv2 release has.
    """
    tokens = state.get("register_tokens", state.get("reg_token"))
    count = 0 if tokens is None else tokens.shape[-2]
    if count not in REGISTER_TOKEN_COUNTS:
        raise ValueError(f"the weights have {count} register tokens; DINOv2 releases have {REGISTER_TOKEN_COUNTS}.")
    return count


DINOV2 = Family(
    backbone=DINOv2,
    checkpoint_filter=dinov2_to_timm,
    native_patch=14,
    native_img_size=518,
    # Every DINOv2 block has a fused qkv and layer scale (the official and timm layouts share these names).
    signatures=(frozenset({"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.ls1.gamma"}),),
    official_markers=("mask_token", "register_tokens", "blocks.0.mlp.w12.weight"),
    layouts="the official dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth layout or a timm vit_*_patch14[_reg4]_dinov2 "
            "state dict, or a transformers Dinov2Model/Dinov2WithRegistersModel checkpoint",
    transformers_layouts=(hf_layouts.DINOV2, hf_layouts.DINOV2_REGISTERS),
    options=(Option("register_tokens", REGISTER_TOKEN_COUNTS, count_register_tokens,
                    help="register tokens: 4 for the *_reg4 releases"),),
    patch_resampling=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (see the module docstring)."""
    return run_converter(DINOV2, __doc__.splitlines()[0], argv)

