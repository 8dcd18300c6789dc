"""Import a checkpoint of the official SoMA release (github ysj9909/SoMA) for evaluation with this codebase.

    python tools/convert_models/released_soma.py RELEASED_BEST.pth DINOV2_RELEASE.pth OUT.pth [--config CONFIG]
    python tools/convert_models/released_soma.py soma_dinov2-L_g2cbm_best.pth dinov2_vitl14_pretrain.pth \\
        checkpoints/soma_dinov2-l_gta2cbm-512_released.pth --config configs/soma/soma_dinov2-l_gta2cbm-512.py
    bash tools/test.sh configs/soma/soma_dinov2-l_gta2cbm-512.py checkpoints/soma_dinov2-l_gta2cbm-512_released.pth

``RELEASED_BEST.pth`` is a released adapter & head file (``soma_dinov2-L_*_best.pth``, the output of the
official ``tools/extract_soma_weights.py``: ``lora_A``/``lora_B``, every backbone bias, ``mask_token`` and the
Mask2Former ``decode_head.*``, under ``state_dict``) or a full checkpoint of the official training. Its backbone
keys are those of the official DINOv2 with separate ``q``/``k``/``v`` layers under ``backbone.model.``
(``backbone.model.blocks.8.attn.q.lora_A.weight``, ``...attn.q.bias``, ...). Its ``state_dict`` is what the
official code evaluates (the EMA weights when the run used EMA; ``ema_state_dict`` holds the raw ones and is
ignored).

``DINOV2_RELEASE.pth`` is the official ``dinov2_vitl14_pretrain.pth`` (or the official converter's output, or
``tools/convert_models/dinov2.py --patch-resample bicubic``'s). It is prepared as the official converter does:
the 14×14 kernel interpolated bicubically to the config's patch size, the position embedding resized bicubically
(no antialiasing) to the config's ``img_size``. Then, as the official ``tools/merge_soma_weights.py``, the
released tensors replace the base ones. The official layer computes ``W x + b + s·B A x`` with the *pretrained*
W (its residual slot is overwritten by the pretrained weights after the SVD, see docs/released_weights.md), so
the output keeps ``W_res = W_pre`` and the released A, B in this codebase's SoMA layout (q/k/v fused as three
slices): ``tools/test.sh CONFIG OUT.pth`` then evaluates the released function. ``CONFIG`` (default: the G→CBM
512 config) must match the released run's crop size (the ``*_1024x1024_best.pth`` files need a ``-1024`` config).
Unknown or missing keys are refused with their names.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from soma.models.builder import build_model
from soma.peft import soma_layers
from soma.utils import load_weights, save_checkpoint_atomic

from .patch_kernel import PATCH_KERNEL, resample_patch_kernel
from .reading import unwrap

DEFAULT_CONFIG = "configs/soma/soma_dinov2-l_gta2cbm-512.py"
RELEASE_PREFIX = "backbone.model."  # the official segmentor wraps its DINOv2 in SoraModel(model=...)
OUR_PREFIX = "backbone.vit."
HEAD_PREFIX = "decode_head."
QKV = ("q", "k", "v")
_SPLIT_QKV = re.compile(r"^(blocks\.\d+\.attn\.)([qkv])\.(weight|bias|lora_A\.weight|lora_B\.weight)$")
_ADAPTER = re.compile(r"^(.+)\.(lora_A|lora_B)\.weight$")
UNUSED_RELEASE_KEYS = ("mask_token",)  # iBOT's mask token: trainable in the official code but never used


# ---------------------------------------------------------------------------------------------------- reading
def released_state(obj: Any) -> dict[str, torch.Tensor]:
    """The weights the official code evaluates: ``state_dict`` of a released/extracted file, without ``module.``.

    Raises:
        ValueError: no ``state_dict`` of tensors, or no ``backbone.model.`` / ``decode_head.`` key in it.
    """
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("the released file holds no `state_dict` of tensors.")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith((RELEASE_PREFIX, HEAD_PREFIX)) for k in state):
        raise ValueError(f"not an official SoMA segmentation checkpoint: no '{RELEASE_PREFIX}*' or "
                         f"'{HEAD_PREFIX}*' keys (found e.g. {sorted(state)[:5]}).")
    return state


def release_backbone(obj: Any, patch_size: int, grid: int) -> dict[str, torch.Tensor]:
    """The DINOv2 release weights as the official converter prepares them, with its key names (q/k/v split).

    Kernel: bicubic interpolation to ``patch_size`` (left as it is when it already has that size). Position
    embedding: class position kept, patch grid resized to ``grid``×``grid`` bicubically without antialiasing.

    Raises:
        ValueError: not a DINOv2 file, or a kernel another method resampled.
    """
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    if isinstance(meta, Mapping) and meta.get("patch_resample") not in (None, "bicubic"):
        raise ValueError(f"the DINOv2 file's patch kernel was resampled by {meta['patch_resample']!r}; the released "
                         "models were trained on the bicubic one: pass the official dinov2_vitl14_pretrain.pth.")
    state = unwrap(obj)
    if PATCH_KERNEL not in state or "pos_embed" not in state:
        raise ValueError(f"not a DINOv2 release file: no '{PATCH_KERNEL}'/'pos_embed' "
                         f"(found e.g. {sorted(state)[:5]}).")
    state = dict(state)
    if state[PATCH_KERNEL].shape[-1] != patch_size:
        state[PATCH_KERNEL] = resample_patch_kernel(state[PATCH_KERNEL], patch_size, "bicubic")
    pos = state["pos_embed"]
    old_grid = math.isqrt(pos.shape[1] - 1)
    if old_grid * old_grid != pos.shape[1] - 1:
        raise ValueError(f"`pos_embed` of shape {tuple(pos.shape)} is not a class position plus a square grid "
                         "(DINOv2 with registers has no official SoMA release).")
    if old_grid != grid:
        patches = pos[:, 1:].reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
        state["pos_embed"] = torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], 1)
    for key in [k for k in state if ".attn.qkv." in k]:
        for name, part in zip(QKV, state.pop(key).chunk(3, dim=0)):
            state[key.replace(".qkv.", f".{name}.")] = part
    return state


# ---------------------------------------------------------------------------------------------------- mapping
def to_our_layout(merged: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Released key names → this codebase's segmentor, q/k/v fused as three slices of ``attn.qkv``.

    Raises:
        ValueError: keys with no place in ``model`` (unknown), weights ``model`` needs that no file provides
            (missing, named as in the released file), or shapes that differ.
    """
    backbone = model.backbone
    layers = {OUR_PREFIX + name: layer for name, layer in soma_layers(backbone.vit).items()}
    own = model.state_dict()
    ours, unknown, absent, qkv_parts = {}, [], [], {}
    for key, value in merged.items():
        if key.startswith(HEAD_PREFIX) and key in own:
            ours[key] = value
        elif not key.startswith(RELEASE_PREFIX) or key.startswith(HEAD_PREFIX):
            unknown.append(key)
        elif match := _SPLIT_QKV.match(key[len(RELEASE_PREFIX):]):
            qkv_parts.setdefault(f"{match.group(1)}qkv.{match.group(3)}", {})[match.group(2)] = (key, value)
        elif not _place(key[len(RELEASE_PREFIX):], value, layers, own, ours, backbone):
            unknown.append(key)
    for fused, parts in qkv_parts.items():
        if len(parts) != len(QKV):  # a partial q/k/v set
            source = next(iter(parts.values()))[0]
            absent.extend(re.sub(r"\.attn\.[qkv]\.", f".attn.{n}.", source) for n in QKV if n not in parts)
        elif not _place(fused, torch.cat([parts[n][1] for n in QKV]), layers, own, ours, backbone):
            unknown.extend(key for key, _ in parts.values())
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) of the released file have no place in the config's model: "
                         f"{sorted(unknown)[:10]}; is it a SoMA segmentation checkpoint of this config (rank, "
                         "start block, head)?")
    missing = sorted(set(absent) | {_release_name(key) for key in own if key not in ours})
    if missing:
        raise ValueError(f"{len(missing)} weight(s) of the config's model are in neither file: {missing[:10]}"
                         "; the released file must hold the adapters (lora_A/lora_B) of every adapted layer and "
                         "the whole decode_head, the DINOv2 file every pretrained backbone weight.")
    wrong = [f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in ours.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{len(wrong)} weight(s) have another shape than the config's model (another rank, "
                         f"crop size or head?): {wrong[:5]}")
    return {k: ours[k] for k in own}


def _place(name: str, value: torch.Tensor, layers: Mapping[str, Any], own: Mapping[str, Any],
           ours: dict[str, torch.Tensor], backbone: Any) -> bool:
    """Put one backbone tensor (its name in the official DINOv2, qkv fused) at its key in our model.

    Returns:
        ``False`` when our model has no place for it and it is not a weight we deliberately leave out (the unused
        mask token, parts the backbone prunes such as the final norm).
    """
    if adapter := _ADAPTER.match(name):
        module, which = OUR_PREFIX + adapter.group(1), adapter.group(2)
        if module not in layers:
            return False
        # The official scale is lora_alpha / r = 1 in every released config; fold it in if ours differs.
        ours[f"{module}.{which}"] = value if which == "lora_A" else value / layers[module].scale
        return True
    module, _, leaf = (OUR_PREFIX + name).rpartition(".")
    target = f"{module}.base_layer.{leaf}" if module in layers else f"{module}.{leaf}"
    if target in own:
        ours[target] = value
        return True
    return name in UNUSED_RELEASE_KEYS or backbone._is_unused_weight(name)


def _release_name(key: str) -> str:
    """Our key as the released file names it, for messages (``attn.qkv`` → ``attn.{q,k,v}``)."""
    if not key.startswith(OUR_PREFIX):
        return key
    rest = key[len(OUR_PREFIX):].replace(".base_layer.", ".")
    rest = re.sub(r"\.(lora_A|lora_B)$", r".\1.weight", rest)
    return RELEASE_PREFIX + rest.replace(".attn.qkv.", ".attn.{q,k,v}.")


# ---------------------------------------------------------------------------------------------------- command
def import_released(released: str | Path, dinov2: str | Path, out: str | Path,
                    config: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """Write ``out``: the released model in this codebase's layout for ``config`` (see the module docstring).

    Returns:
        The ``meta`` saved with the weights.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file of another kind, unknown/missing keys, shapes that do not fit ``config``.
    """
    try:
        released_weights = released_state(load_weights(released))
    except RuntimeError as exc:  # e.g. a full official training checkpoint, with its message hub and optimizer
        raise RuntimeError(f"{exc}. To import a full checkpoint of the official training, keep only its weights "
                           "first, e.g. with the official tools/extract_soma_weights.py.") from exc
    with torch.device("meta"):  # structure, names and shapes only: no memory, no random initialisation
        model = build_model(str(config), pretrained=False)
    vit = model.backbone.vit
    patch_size = vit.patch_embed.proj.weight.shape[-1]
    grid = math.isqrt(vit.pos_embed.shape[1] - vit.num_prefix_tokens)
    base = release_backbone(load_weights(dinov2), patch_size, grid)
    merged = {RELEASE_PREFIX + k: v for k, v in base.items()}
    merged.update(released_weights)  # the released tensors replace the pretrained ones, as the official merge does
    state = to_our_layout(merged, model)
    model.load_state_dict(state, strict=True, assign=True)  # a last check that the model takes every weight
    adapted = len(soma_layers(vit))
    meta = dict(imported_from="official SoMA release", released=Path(released).name, dinov2=Path(dinov2).name,
                config=str(config), patch_resample="bicubic", patch_size=patch_size, grid=grid,
                adapted_layers=adapted)
    save_checkpoint_atomic(dict(state_dict=state, meta=meta), out)
    print(f"wrote {out}: {adapted} adapted layers (W = pretrained, adapters as released), "
          f"{sum(k.startswith(HEAD_PREFIX) for k in state)} decode_head tensors, patch {patch_size} (bicubic), "
          f"position grid {grid}x{grid}; evaluate with: bash tools/test.sh {config} {out}")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("released", help="official SoMA *_best.pth (adapters & head) or full official checkpoint")
    parser.add_argument("dinov2", help="official dinov2_vitl14_pretrain.pth (or the official converter's output)")
    parser.add_argument("out", help="output checkpoint for tools/test.sh CONFIG OUT")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"the config to evaluate with (crop size must match the released run); default: "
                             f"{DEFAULT_CONFIG}")
    args = parser.parse_args(argv)
    try:
        import_released(args.released, args.dinov2, args.out, args.config)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

