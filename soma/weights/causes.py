"""The usual causes of a checkpoint that does not fit its model, recognised from the mismatch and named in words:
an adapter-only or merged file, nested or backbone-only weights, another rank, adapted blocks, adapter module
options, class count or backbone size.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from soma.peft import adapter_keys, adapter_layers, adapter_modules, is_adapter_key, state_adapter_keys

from soma.peft.state import ADAPTER_FORMAT

from .mismatch import StateDictMismatch, compare_state_dict


# ---------------------------------------------------------------------------------------------- causes
def _checkpoint_adapter_keys(model: nn.Module, own_keys: Mapping[str, str],
                             state: Mapping[str, Any]) -> dict[str, str]:
    """The checkpoint's adapter keys, each mapped to its adapter layer or module.

    A key the model has is one if the model's adapter protocol says so (``own_keys``); a key only the checkpoint has
    is one if it lies under one of the model's adapter modules, or by :func:`soma.peft.state_adapter_keys`.
    """
    own_state = model.state_dict(keep_vars=True)
    modules = [name for name in adapter_modules(model) if name]
    by_keys = state_adapter_keys(state)
    found = {}
    for key in state:
        if key in own_state:
            owner = own_keys.get(key)
        else:
            owner = next((m for m in modules if key.startswith(m + ".")), None) or by_keys.get(key)
        if owner is not None:
            found[key] = owner
    return found


def _adapted_blocks(layers: set[str]) -> list[int]:
    return sorted({int(m.group(1)) for n in layers if (m := re.search(r"\.blocks\.(\d+)\.", n + "."))})


def _rank_changes(mismatch: StateDictMismatch, layer_keys: set[str]) -> list[tuple[int, int]]:
    """``(checkpoint rank, model rank)`` read off the adapter layers' tensors (``layer_keys``) whose shapes differ
    along their rank axis only.

    A rank-r adapter matrix has r (or slices × r) along its shortest axis; the smallest differing pair is the
    rank. A difference along another axis (the layer's width) is not a rank change.
    """
    pairs = set()
    for name, theirs, ours in mismatch.wrong_shape:
        if name not in layer_keys or len(theirs) != len(ours) or len(ours) < 2:
            continue
        differing = [axis for axis, (t, o) in enumerate(zip(theirs, ours)) if t != o]
        if len(differing) == 1 and ours[differing[0]] == min(ours):
            pairs.add((theirs[differing[0]], ours[differing[0]]))
    return sorted(pairs)[:1]


def _module_option_changes(model: nn.Module, state: Mapping[str, Any], mismatch: StateDictMismatch) -> list[str]:
    """The options of the model's adapter modules (Rein) that the checkpoint's tensors were made with, where the
    module's tensors do not fit: asked of each module (``AdapterModule.option_changes``), worded per option."""
    causes = []
    differing = mismatch.missing + mismatch.unexpected + [name for name, _, _ in mismatch.wrong_shape]
    for name, module in adapter_modules(model).items():
        prefix = f"{name}." if name else ""
        if not any(key.startswith(prefix) for key in differing):
            continue
        saved = {key[len(prefix):]: tuple(value.shape) for key, value in state.items()
                 if key.startswith(prefix) and isinstance(value, torch.Tensor)}
        changes = module.option_changes(saved) if saved else []
        config = "model.backbone.peft." if name.startswith("backbone.") else ""
        for change in changes:
            options = "/".join(f"`{config if i == 0 else ''}{o}`" for i, o in enumerate(change.options))
            causes.append(f"other {module.method_name} options: {options} is {change.saved} in the checkpoint vs "
                          f"{change.current} in the config")
    return causes


def _method_of(model: nn.Module) -> str:
    kinds = sorted({layer.method_name for layer in adapter_layers(model).values()}
                   | {module.method_name for module in adapter_modules(model).values()})
    return kinds[0] if len(kinds) == 1 else "adapter"


def _blocks(names: Any) -> int:
    found = [int(m.group(1)) for n in names if n.startswith("backbone.") and (m := re.search(r"\.blocks\.(\d+)\.", n))]
    return max(found) + 1 if found else 0


def _class_heads(model: nn.Module) -> dict[str, int]:
    """``{module prefix: num_classes}`` of the heads (``decode_head``, ``bbox_head``, ...)."""
    heads = {}
    for name, module in model.named_modules():
        count = getattr(module, "num_classes", None)
        if name and isinstance(count, int) and count > 0 and not any(name.startswith(p + ".") for p in heads):
            heads[name] = count
    return heads


def likely_causes(model: nn.Module, checkpoint: Any, state: Mapping[str, Any],
                  mismatch: StateDictMismatch) -> list[str]:
    """The causes of ``mismatch`` that can be told from the names and shapes, in words (may be empty)."""
    if isinstance(checkpoint, Mapping) and checkpoint.get("format") == ADAPTER_FORMAT:
        return ["this is an adapter-only file (tools/extract_adapter.py): it holds the SoMA adapters and the "
                "head, not the base weights. Rebuild a full checkpoint with `python tools/merge_adapter.py "
                "CONFIG ADAPTER OUT.pth` and evaluate OUT.pth with `--cfg-options model.backbone.peft=None`"]
    own = model.state_dict()
    layout = _layout_cause(model, own, state)
    if layout:  # the file's tensors are not a whole model's: the causes below would read wrong differences
        return [layout]
    own_keys = adapter_keys(model)
    causes = []
    own_adapters = set(own_keys.values())
    their_adapters = set(_checkpoint_adapter_keys(model, own_keys, state).values())
    method = _method_of(model)
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    if own_adapters and not their_adapters:
        if _holds_merged_layers(model, state):
            merged = " (its meta data says merged=True)" if isinstance(meta, Mapping) and meta.get("merged") else ""
            causes.append(f"the checkpoint has no {method} adapters{merged} but the config's model has "
                          f"{len(own_adapters)} adapted layers: a merged checkpoint (tools/merge_adapter.py) is "
                          "evaluated with `--cfg-options model.backbone.peft=None`")
    elif their_adapters and not own_adapters:
        causes.append(f"the checkpoint has {len(their_adapters)} adapted layers but the config's model "
                      "has none (`model.backbone.peft=None`?): use the config it was trained with, or merge the "
                      "adapters first (tools/extract_adapter.py, then tools/merge_adapter.py)")
    elif own_adapters:
        layers = set(adapter_layers(model))
        for theirs, ours in _rank_changes(mismatch, {key for key, owner in own_keys.items() if owner in layers}):
            causes.append(f"another {method} rank: the checkpoint was trained with r={theirs}, the config has "
                          f"r={ours} (`model.backbone.peft.r`)")
        theirs_blocks, own_blocks = _adapted_blocks(their_adapters), _adapted_blocks(own_adapters)
        if theirs_blocks != own_blocks:
            causes.append(f"other adapted blocks: the checkpoint adapts blocks {theirs_blocks}, the config "
                          f"{own_blocks} (`model.backbone.peft.start_block`/`end_block`)")
        causes += _module_option_changes(model, state, mismatch)
    for prefix, count in _class_heads(model).items():
        for name, theirs, ours in mismatch.wrong_shape:
            if name.startswith(prefix + ".") and len(theirs) == len(ours) and theirs[1:] == ours[1:]:
                other = theirs[0] - (ours[0] - count)  # Mask2Former's class embedding has one "no object" row
                if 0 < other != count:
                    causes.append(f"another number of classes: the checkpoint's {prefix} has {other} classes, the "
                                  f"config's {count} (`model.{prefix}.num_classes`)")
                    break
    backbone = _backbone_differences(model.state_dict(), state)
    if backbone:
        causes.append("another backbone: " + ", ".join(backbone))
    if not causes and mismatch.total and mismatch.loaded == 0:
        causes.append("no tensor of the checkpoint fits the model: a checkpoint of another model or task?")
    return causes


def _plain_backbone_keys(model: nn.Module, own: Mapping[str, Any]) -> dict[str, str]:
    """``{key as a plain backbone file names it: model key}`` for the backbone's base weights.

    A plain file (pretrained release, tools/export_backbone.py) has the timm model's keys (``blocks.0.attn.qkv.
    weight``) without the segmentor's ``backbone.vit.`` prefix and without the adapter layers' ``base_layer.``.
    """
    vit = getattr(getattr(model, "backbone", None), "vit", None)
    if not isinstance(vit, nn.Module):
        return {}
    prefix = "backbone.vit."
    wrapped = {f"{prefix}{name}.{layer.base_layer_name}.": f"{name}." for name, layer in adapter_layers(vit).items()}
    plain = {}
    for key in own:
        if not key.startswith(prefix) or is_adapter_key(key):
            continue
        short = next((f"{layer}{key[len(full):]}" for full, layer in wrapped.items() if key.startswith(full)),
                     key[len(prefix):])
        plain[short] = key
    return plain


def _weights_under(state: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Entries of ``state`` that are themselves dicts of tensors (weights nested under another key)."""
    return {key: value for key, value in state.items() if isinstance(value, Mapping)
            and any(isinstance(v, torch.Tensor) for v in value.values())}


def _layout_cause(model: nn.Module, own: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """A file whose tensors are not laid out as a whole model's: weights nested under another key (``model``,
    ``ema``, ...), or the weights of the backbone alone (a pretrained or exported backbone file)."""
    nested = _weights_under(state)
    if nested and not any(key in own for key in state):
        key, inner = max(nested.items(), key=lambda item: len(item[1]))
        inner = {re.sub(r"^module\.", "", k): v for k, v in inner.items()}
        where = (f"the file keeps its weights under the key '{key}', where checkpoints of this codebase "
                 "(mmengine) keep them under 'state_dict'")
        if not compare_state_dict(model, inner):
            return (f"{where}; they fit the model: re-save them as `{{'state_dict': checkpoint['{key}']}}` "
                    "(torch.load, then torch.save)")
        backbone = _backbone_only_cause(model, own, inner)
        return f"{where}; {backbone}" if backbone else where
    return _backbone_only_cause(model, own, state)


def _backbone_only_cause(model: nn.Module, own: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """The weights of the backbone alone, named as a plain ViT file or with the model's ``backbone.`` prefix."""
    names = [k for k, v in state.items() if isinstance(v, torch.Tensor)]
    if not names:
        return None
    plain = _plain_backbone_keys(model, own)
    others = sorted({k.split(".")[0] for k in own} - {"backbone"})  # the heads, neck, ...
    in_plain_layout = sum(name in plain for name in names)
    prefixed = all(name.startswith("backbone.") for name in names) and any(name in own for name in names)
    tops = {key.split(".")[0] for key in own}
    if in_plain_layout * 2 >= len(names) and not any(name.split(".")[0] in tops for name in names):
        layout = f"named as in a plain ViT file, e.g. '{next(n for n in names if n in plain)}'"
    elif prefixed and others:
        layout = f"none of {', '.join(others)}"
    else:
        return None
    return (f"the checkpoint holds backbone weights only ({len(names)} tensors, {layout}): pretrained backbone "
            "weights belong in `model.backbone.init_cfg=dict(type='Pretrained', checkpoint=FILE)`, whereas "
            "`load_from` and the checkpoint of tools/test.py load a whole trained model (backbone and heads)")


def _holds_merged_layers(model: nn.Module, state: Mapping[str, Any]) -> bool:
    """Whether ``state`` holds the adapted layers of ``model`` as plain layers (``...qkv.weight``): adapters
    merged into the weights (tools/merge_adapter.py) or a model trained without adapters."""
    layers = adapter_layers(model)
    return bool(layers) and all(isinstance(state.get(f"{name}.weight"), torch.Tensor) for name in layers)


def _backbone_differences(own: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """Width, depth and position-embedding size of the ViT backbone, where they differ."""
    found = []
    token = next((k for k in ("backbone.vit.cls_token", "backbone.vit.patch_embed.proj.weight") if k in own
                  and isinstance(state.get(k), torch.Tensor)), None)
    if token is not None:
        dims = (state[token].shape[0 if token.endswith("weight") else -1],
                own[token].shape[0 if token.endswith("weight") else -1])
        if dims[0] != dims[1]:
            found.append(f"embedding width {dims[0]} in the checkpoint vs {dims[1]} in the config (`arch`)")
        elif token.endswith("weight") and state[token].shape[-1] != own[token].shape[-1]:
            found.append(f"patch size {state[token].shape[-1]} vs {own[token].shape[-1]} (`patch_size`)")
    depths = _blocks(state), _blocks(own)
    if depths[0] and depths[1] and depths[0] != depths[1]:
        found.append(f"{depths[0]} blocks in the checkpoint vs {depths[1]} in the config (`arch`/`out_indices`)")
    pos = "backbone.vit.pos_embed"
    if pos in own and isinstance(state.get(pos), torch.Tensor) and state[pos].shape[1] != own[pos].shape[1] \
            and state[pos].shape[-1] == own[pos].shape[-1]:
        found.append(f"position embedding of {state[pos].shape[1]} vs {own[pos].shape[1]} tokens (`img_size`)")
    return found
