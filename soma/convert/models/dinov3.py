"""Convert a DINOv3 checkpoint into SoMA's backbone format.

    python tools/convert_models/dinov3.py SRC DST [--arch small|base|large|small_plus|huge_plus|7b] [--qkv-bias 0|1]
    python tools/convert_models/dinov3.py dinov3_vitl16_pretrain_lvd1689m.pth checkpoints/dinov3_vitl16_converted.pth
    python tools/convert_models/dinov3.py dinov3_vit7b16_pretrain_lvd1689m-a955f4ea.pth \
        checkpoints/dinov3_vit7b16_converted.pth

Accepts the official facebookresearch/dinov3 ``dinov3_vit{s,b,l}16_pretrain_*.pth`` releases (``storage_tokens``,
``ls1.gamma``, ``attn.qkv.bias`` with its ``bias_mask``, ``rope_embed.periods``, ``mask_token``), the SwiGLU
releases ``dinov3_vits16plus``, ``dinov3_vith16plus`` and ``dinov3_vit7b16`` (``mlp.w1`` gate, ``mlp.w2`` value,
``mlp.w3`` output; the 7B without any ``qkv.bias`` and with a pretraining-only ``local_cls_norm``, dropped), timm
``vit_*_patch16_dinov3[_qkvb]`` state dicts (``.pth`` or ``.safetensors``) and transformers ``DINOv3ViTModel``
checkpoints (``facebook/dinov3-vit*16-pretrain-*``: a ``save_pretrained`` folder or its ``model.safetensors``; the
gated-MLP ones, H+ and 7B, too). The arch (width, depth, and a GELU or SwiGLU MLP: S and S+ share a width), the 4
storage tokens and the q/v biases are read off the weights; ``--arch``, ``--register-tokens`` and
``--qkv-bias`` are checked against them. The distilled releases' q/k/v biases are all zero: such files become the
bias-free timm model (load it with ``DINOv3(qkv_bias=False)``, the default), files with non-zero biases the
``*_qkvb`` one (``qkv_bias=True``).
:func:`~soma.models.backbones.checkpoint_filters.dinov3_to_timm` converts them (transformers
keys into the official ones, then timm's ``eva.checkpoint_filter_fn``); the ``mask_token`` and the fixed RoPE
periods are dropped.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

import torch

from soma.models.backbones import DINOv3
from soma.models.backbones.dinov3 import STORAGE_TOKENS

from soma.models.backbones import hf_layouts
from .family import Family, Option
from .cli import main as run_converter
from soma.models.backbones.checkpoint_filters import dinov3_to_timm, qv_bias_is_nonzero


def count_storage_tokens(state: Mapping[str, torch.Tensor]) -> int:
    """Storage tokens in an official (``storage_tokens``) or timm (``reg_token``) DINOv3 state dict.

    Raises:
        ValueError: a count no DINOv3 release has.
    """
    tokens = state.get("storage_tokens", state.get("reg_token"))
    count = 0 if tokens is None else tokens.shape[-2]
    if count != STORAGE_TOKENS:
        raise ValueError(f"the weights have {count} storage/register tokens; DINOv3 releases have {STORAGE_TOKENS}.")
    return count


def has_qkv_bias(state: Mapping[str, torch.Tensor]) -> int:
    """1 for a timm ``*_dinov3_qkvb`` state dict or an official file with non-zero q/v biases, else 0.

    Official files always store ``attn.qkv.bias``; only non-zero values need the ``*_qkvb`` model.
    """
    if "blocks.0.attn.q_bias" in state:
        return 1
    return int(qv_bias_is_nonzero(state))


_GATED_MLP = re.compile(r"^blocks\.\d+\.mlp\.(?:w1|fc1_g)\.weight$")  # official / timm SwiGLU gate


@functools.lru_cache(maxsize=None)
def arch_has_swiglu(arch: str) -> bool:
    """Whether the DINOv3 ``arch`` has a SwiGLU MLP (its timm model built on the meta device)."""
    import timm

    name, kwargs, _ = DINOv3.arch_zoo[arch]
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    return hasattr(model.blocks[0].mlp, "fc1_g")


def same_mlp_archs(state: Mapping[str, torch.Tensor], archs: list[str]) -> list[str]:
    """The ``archs`` whose MLP (GELU or SwiGLU) is the one of the weights (official or timm layout)."""
    gated = any(_GATED_MLP.match(key) for key in state)
    return [arch for arch in archs if arch_has_swiglu(arch) == gated]


DINOV3 = Family(
    backbone=DINOv3,
    checkpoint_filter=dinov3_to_timm,
    native_patch=16,
    native_img_size=256,  # no absolute position embedding to read it from; RoPE works at any grid
    # Fused qkv and layer scale in every block, plus storage tokens (named differently by the two layouts).
    signatures=(frozenset({"patch_embed.proj.weight", "storage_tokens", "blocks.0.attn.qkv.weight",
                           "blocks.0.ls1.gamma"}),
                frozenset({"patch_embed.proj.weight", "reg_token", "blocks.0.attn.qkv.weight", "blocks.0.gamma_1"})),
    official_markers=("storage_tokens", "mask_token", "blocks.0.ls1.gamma"),
    layouts="the official dinov3_vit{s,b,l}16_pretrain_*.pth layout (or vits16plus, vith16plus, vit7b16), a timm "
            "vit_*_patch16_dinov3[_qkvb] state dict, or a transformers DINOv3ViTModel checkpoint",
    transformers_layouts=(hf_layouts.DINOV3,),
    options=(Option("register_tokens", (STORAGE_TOKENS,), count_storage_tokens,
                    help=f"storage (register) tokens: {STORAGE_TOKENS} in every DINOv3 release"),
             Option("qkv_bias", (0, 1), has_qkv_bias,
                    help="1: q/v biases (timm *_dinov3_qkvb; the backbone's qkv_bias=True)")),
    arch_filter=same_mlp_archs,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (see the module docstring)."""
    return run_converter(DINOV3, __doc__.splitlines()[0], argv)

