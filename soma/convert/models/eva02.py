"""Convert an EVA-02 checkpoint into SoMA's backbone format.

    python tools/convert_models/eva02.py SRC DST [--arch tiny|small|base|large] [--patch-resample bicubic|pinv]
    python tools/convert_models/eva02.py eva02_L_pt_m38m_p14.pt checkpoints/eva02_vitl14_converted.pth

Accepts the official EVA-02 MIM checkpoints (weights possibly nested under ``module``/``model``; ``attn.q_proj``,
``attn.q_bias``/``v_bias``, ``mlp.w1``/``w2``/``w3``/``ffn_ln``, ``rope.*``) and timm ``eva02_*_patch14_224``
state dicts (``.pth`` or ``.safetensors``). The arch is read off the shapes; ``--arch`` is checked against them.
:func:`~soma.models.backbones.checkpoint_filters.eva02_to_timm`
(timm's ``eva.checkpoint_filter_fn``) converts the official
layout; the MIM ``mask_token``/``lm_head`` and the
fixed ``rope`` tables are dropped. ``--patch-resample bicubic`` interpolates the kernel to 16×16 as the official
SoMA EVA-02 converter does (see :mod:`soma.convert.models.patch_kernel`).
"""
from __future__ import annotations

from collections.abc import Sequence

from soma.models import EVA02

from .family import Family
from .cli import main as run_converter
from soma.models.backbones.checkpoint_filters import eva02_to_timm

EVA02_FAMILY = Family(
    backbone=EVA02,
    checkpoint_filter=eva02_to_timm,
    native_patch=14,
    native_img_size=224,
    # Separate q/k/v projections (base/large, and the tests' tiny), or a fused qkv with EVA's separate q/v biases.
    signatures=(frozenset({"patch_embed.proj.weight", "blocks.0.attn.q_proj.weight"}),
                frozenset({"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.q_bias"})),
    official_markers=("mask_token", "blocks.0.mlp.w1.weight", "blocks.0.mlp.w12.weight", "blocks.0.mlp.ffn_ln.weight"),
    layouts="the official EVA-02 MIM layout or a timm eva02_*_patch14_224 state dict",
    patch_resampling=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (see the module docstring)."""
    return run_converter(EVA02_FAMILY, __doc__.splitlines()[0], argv)

