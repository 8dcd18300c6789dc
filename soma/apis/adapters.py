"""Adapter files and merged checkpoints: the library part of tools/extract_adapter.py, tools/merge_adapter.py and
tools/export_backbone.py.

* :func:`extract_adapter`: a trained checkpoint → the adapter-only file (adapters, trained biases, head, base
  fingerprint), a few MB for ViT-L;
* :func:`merge_adapter`: base weights (the config's ``init_cfg``) + adapter file → a full checkpoint with the
  adapters merged into a plain backbone;
* :func:`export_backbone`: a trained checkpoint → the backbone as a plain timm state dict, adapters merged.

Every function loads strictly (a checkpoint that does not fit the config's model is refused with the likely
cause) and never writes over one of its inputs; an existing output is replaced only with ``force``.
"""
from __future__ import annotations

from typing import Any

from ..peft import adapter_layers, adapter_modules, adapter_state_dict, load_adapter_state_dict, unload_adapters
from ..config import load_config
from ..peft.state import ADAPTER_FORMAT
from ..utils import UserError, check_output_file, load_weights, save_checkpoint_atomic
from ..weights import CheckpointMismatchError, load_checkpoint_checked
from ..weights import compare_state_dict
from ..models.builder import build_model, head_state

__all__ = ["export_backbone", "extract_adapter", "merge_adapter", "read_adapter"]


def extract_adapter(config: str, checkpoint: str, out: str, force: bool = False) -> dict[str, Any]:
    """Save the adapter file of ``checkpoint`` at ``out``; returns what was saved (``format``, ``backbone``,
    ``head``, ``meta``)."""
    check_output_file(out, [config, checkpoint], force=force)
    model = build_model(config, pretrained=False)
    vit = model.backbone.vit
    if not adapter_layers(vit) and not adapter_modules(vit):
        raise UserError(f"{config}'s model has no adapters (`model.backbone.peft` is None): there is no adapter "
                        "to extract; use the config the checkpoint was trained with.")
    load_checkpoint_checked(model, checkpoint)
    adapter = dict(format=ADAPTER_FORMAT, backbone=adapter_state_dict(vit), head=head_state(model),
                   meta=dict(config=str(config), source=str(checkpoint)))
    save_checkpoint_atomic(adapter, out)
    return adapter


def read_adapter(adapter_path: str) -> dict[str, Any]:
    """The adapter file's content; anything else (a training checkpoint, another file) is refused."""
    try:
        adapter = load_weights(adapter_path)
    except RuntimeError as exc:
        raise CheckpointMismatchError(
            f"'{adapter_path}' is not an adapter file of tools/extract_adapter.py ({exc}). A training checkpoint is "
            "turned into one with tools/extract_adapter.py.") from None
    if not isinstance(adapter, dict) or adapter.get("format") != ADAPTER_FORMAT:
        found = adapter.get("format") if isinstance(adapter, dict) else type(adapter).__name__
        raise CheckpointMismatchError(f"'{adapter_path}' is not an adapter file of tools/extract_adapter.py "
                                      f"(format {found!r}, expected {ADAPTER_FORMAT!r}). A training checkpoint is "
                                      "turned into one with tools/extract_adapter.py.")
    return adapter


def merge_adapter(config: str, adapter_path: str, out: str, force: bool = False) -> None:
    """Load base + adapter, merge, and save ``{"state_dict", "meta"}`` at ``out``.

    The base weights are the config's ``model.backbone.init_cfg`` checkpoint; an adapter trained on other base
    weights, another rank or another head is refused.
    """
    base = load_config(config).model.backbone.get("init_cfg") or {}
    check_output_file(out, [config, adapter_path] + ([base["checkpoint"]] if base.get("checkpoint") else []),
                      force=force)
    adapter = read_adapter(adapter_path)
    model = build_model(config, pretrained=True)
    try:
        load_adapter_state_dict(model.backbone.vit, adapter["backbone"])  # refuses another base or rank
    except ValueError as exc:
        raise CheckpointMismatchError(f"adapter '{adapter_path}' does not fit {config}: {exc}") from None
    mismatch = compare_state_dict(head_state(model), adapter["head"])
    if mismatch:
        raise CheckpointMismatchError(f"the head in adapter '{adapter_path}' does not fit {config}'s model: "
                                      f"{mismatch.summary()}.")
    model.load_state_dict(adapter["head"], strict=False)
    unload_adapters(model.backbone.vit, merge=True)
    save_checkpoint_atomic(dict(state_dict=model.state_dict(), meta=dict(adapter["meta"], merged=True)), out)


def export_backbone(config: str, checkpoint: str, out: str, force: bool = False) -> dict[str, Any]:
    """Build the model of ``config``, load ``checkpoint``, merge the adapters and save the backbone's weights.

    Returns:
        The meta data saved next to the state dict (timm model name, patch and image size, depth).
    """
    check_output_file(out, [config, checkpoint], force=force)
    model = build_model(config, pretrained=False)  # the checkpoint holds every weight
    load_checkpoint_checked(model, checkpoint)
    vit = model.backbone.vit
    adapted = len(adapter_layers(vit))
    unload_adapters(vit, merge=True)
    meta = dict(timm_model=vit.default_cfg.get("architecture"), patch_size=vit.patch_embed.patch_size[0],
                img_size=vit.patch_embed.img_size[0], depth=len(vit.blocks), merged_layers=adapted,
                source=str(checkpoint))
    save_checkpoint_atomic({"state_dict": vit.state_dict(), "meta": meta}, out)
    return meta
