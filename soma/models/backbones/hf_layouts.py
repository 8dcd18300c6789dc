"""Hugging Face transformers checkpoints → the official facebookresearch key layouts that timm's filters read.

Recognised by their keys (a prefix before ``embeddings.``, e.g. ``dinov2.`` of a classification model, is
removed):

* ``Dinov2Model`` (``facebook/dinov2-{small,base,large,giant}``): ``embeddings.patch_embeddings.projection``,
  ``embeddings.position_embeddings`` (class position included), ``encoder.layer.N.attention.attention.{query,key,
  value}``, ``attention.output.dense``, ``layer_scale{1,2}.lambda1``, ``mlp.fc1``/``fc2`` or the giant's SwiGLU
  ``mlp.weights_in``/``weights_out``, final ``layernorm``.
* ``Dinov2WithRegistersModel`` (``facebook/dinov2-with-registers-*``): the same plus ``embeddings.register_tokens``.
* ``DINOv3ViTModel`` (``facebook/dinov3-vit{s,b,l}16-pretrain-*``): ``embeddings.patch_embeddings`` (the conv
  itself), ``embeddings.register_tokens`` (the storage tokens), ``layer.N.attention.{q,k,v,o}_proj``,
  ``layer_scale{1,2}.lambda1``, ``mlp.up_proj``/``down_proj``, final ``norm``. Its RoPE has no weights; timm's
  DINOv3 RoPE (``rope_type="dinov3"``, temperature 100, rotate-half) computes the same rotations at inference (the
  training-time jitter/rescale augmentations are off there). The gated-MLP models (``use_gated_mlp``, ViT-S+/H+/7B,
  ``hidden_act="silu"``) have ``mlp.gate_proj``/``up_proj``/``down_proj``: the official SwiGLU ``mlp.w1`` (gate),
  ``w2`` (value) and ``w3`` (output).

transformers 5 renames some modules in memory (``attention.q_proj``/``o_proj`` for DINOv2, ``mlp.gate_proj``/
``up_proj``/``down_proj`` for the DINOv2 giant, a ``model.`` prefix for DINOv3); ``save_pretrained`` writes the
names above, and a ``torch.save(model.state_dict())`` in the new names is read as well.

The output is the official layout: q/k/v concatenated into ``attn.qkv`` (DINOv3: a ``qkv.bias`` with a zero key
part when the model has q/v biases; a key bias, if any, is dropped, since softmax ignores it), ``ls{1,2}.gamma``,
``mlp.w12``/``w3`` for SwiGLU, ``register_tokens`` (DINOv2) or ``storage_tokens`` (DINOv3), ``mask_token`` kept
(the family filters drop it). Keys of no known module (e.g. a classifier head) pass through unchanged, so the
converters list them as dropped.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

StateDict = dict[str, torch.Tensor]

DINOV2 = "Dinov2Model"
DINOV2_REGISTERS = "Dinov2WithRegistersModel"
DINOV3 = "DINOv3ViTModel"
_DINOV2_KERNEL = "embeddings.patch_embeddings.projection.weight"
_DINOV3_KERNEL = "embeddings.patch_embeddings.weight"
# Per-block module renames, transformers → official (both the saved and the in-memory transformers 5 names).
_DINOV2_BLOCK = {"attention.output.dense.": "attn.proj.", "attention.o_proj.": "attn.proj.",
                 "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
                 "mlp.weights_in.": "mlp.w12.", "mlp.weights_out.": "mlp.w3.", "mlp.down_proj.": "mlp.w3."}
_DINOV3_BLOCK = {"attention.o_proj.": "attn.proj.", "layer_scale1.lambda1": "ls1.gamma",
                 "layer_scale2.lambda1": "ls2.gamma", "mlp.up_proj.": "mlp.fc1.", "mlp.down_proj.": "mlp.fc2."}
_DINOV3_GATED_BLOCK = dict(_DINOV3_BLOCK, **{"mlp.gate_proj.": "mlp.w1.", "mlp.up_proj.": "mlp.w2.",
                                              "mlp.down_proj.": "mlp.w3."})
_DINOV2_QKV = re.compile(r"^attention\.(?:attention\.(query|key|value)|([qkv])_proj)\.(weight|bias)$")
_DINOV3_QKV = re.compile(r"^attention\.([qkv])_proj\.(weight|bias)$")
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}
# config.json values the timm models hard-wire: another value computes another function.
_FIXED_CONFIG = {
    "dinov2": dict(hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True),
    "dinov2_with_registers": dict(hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True),
    "dinov3_vit": dict(layer_norm_eps=1e-5, rope_theta=100.0, patch_size=16),
}
# DINOv3's activation follows its MLP: GELU for the plain one, SiLU for the gated (SwiGLU) one.
_DINOV3_ACTIVATION = {False: "gelu", True: "silu"}


def transformers_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """The transformers model class whose ``save_pretrained`` layout ``state`` has, or ``None`` for other layouts."""
    for key in state:
        if key.endswith(_DINOV2_KERNEL):
            prefix = key[: -len(_DINOV2_KERNEL)]
            return DINOV2_REGISTERS if f"{prefix}embeddings.register_tokens" in state else DINOV2
        if key.endswith(_DINOV3_KERNEL):
            return DINOV3
    return None


def from_transformers(state: Mapping[str, torch.Tensor]) -> StateDict:
    """``state`` in the official layout if it has a transformers layout (see the module docstring), else as it is.

    Raises:
        ValueError: a transformers layout this codebase cannot load (the message names it).
    """
    layout = transformers_layout(state)
    if layout is None:
        return dict(state)
    kernel = _DINOV3_KERNEL if layout == DINOV3 else _DINOV2_KERNEL
    prefix = next(k for k in state if k.endswith(kernel))[: -len(kernel)]
    return _dinov3_to_official(state, prefix) if layout == DINOV3 else _dinov2_to_official(state, prefix)


def _split_blocks(state: Mapping[str, torch.Tensor], prefix: str,
                  block_prefix: re.Pattern) -> tuple[dict[str, StateDict], StateDict]:
    """``({block index: {key inside the block: tensor}}, {other key without prefix: tensor})``."""
    blocks: dict[str, StateDict] = {}
    rest: StateDict = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        match = block_prefix.match(name)
        if match:
            blocks.setdefault(match.group(1), {})[name[match.end():]] = value
        else:
            rest[name] = value
    return blocks, rest


def _renamed(name: str, renames: Mapping[str, str]) -> str:
    for old, new in renames.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _dinov2_to_official(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    blocks, rest = _split_blocks(state, prefix, re.compile(r"^encoder\.layer\.(\d+)\."))
    out: StateDict = {}
    embeddings = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
                  "embeddings.position_embeddings": "pos_embed", "embeddings.register_tokens": "register_tokens",
                  "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
                  "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
                  "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    for name, value in rest.items():
        out[embeddings.get(name, name)] = value
    for index, block in blocks.items():
        qkv: dict[str, list] = {}
        gate_up: dict[str, list] = {}
        for name, value in block.items():
            if match := _DINOV2_QKV.match(name):
                qkv.setdefault(match.group(3), [None] * 3)[_QKV_ORDER[match.group(1) or match.group(2)]] = value
            elif name.startswith(("mlp.gate_proj.", "mlp.up_proj.")):  # transformers 5's split SwiGLU input
                leaf = name.rpartition(".")[2]
                gate_up.setdefault(leaf, [None, None])[name.startswith("mlp.up_proj.")] = value
            else:
                out[f"blocks.{index}.{_renamed(name, _DINOV2_BLOCK)}"] = value
        for leaf, parts in qkv.items():
            out[f"blocks.{index}.attn.qkv.{leaf}"] = _concat(parts, f"encoder.layer.{index}.attention q/k/v {leaf}")
        for leaf, parts in gate_up.items():  # the official fused w12 is (gate, value)
            out[f"blocks.{index}.mlp.w12.{leaf}"] = _concat(parts, f"encoder.layer.{index}.mlp gate/up {leaf}")
    return out


def _dinov3_to_official(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    blocks, rest = _split_blocks(state, prefix, re.compile(r"^(?:model\.)?layer\.(\d+)\."))
    out: StateDict = {}
    embeddings = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
                  "embeddings.register_tokens": "storage_tokens",
                  "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
                  "embeddings.patch_embeddings.bias": "patch_embed.proj.bias"}
    for name, value in rest.items():
        out[embeddings.get(name, name)] = value
    for index, block in blocks.items():
        gated = any(name.startswith("mlp.gate_proj.") for name in block)
        renames = _DINOV3_GATED_BLOCK if gated else _DINOV3_BLOCK
        weights: list = [None] * 3
        biases: list = [None] * 3
        for name, value in block.items():
            if match := _DINOV3_QKV.match(name):
                (weights if match.group(2) == "weight" else biases)[_QKV_ORDER[match.group(1)]] = value
            else:
                out[f"blocks.{index}.{_renamed(name, renames)}"] = value
        where = f"layer.{index}.attention"
        out[f"blocks.{index}.attn.qkv.weight"] = _concat(weights, f"{where} q/k/v weight")
        if biases[0] is not None or biases[2] is not None:
            # The official layout: one (q, k, v) bias whose key part the release masks; timm keeps q and v only.
            query, _, value = (b if b is not None else torch.zeros_like(weights[0][:, 0]) for b in biases)
            out[f"blocks.{index}.attn.qkv.bias"] = torch.cat([query, torch.zeros_like(query), value])
    return out


def _concat(parts: list, what: str) -> torch.Tensor:
    if any(part is None for part in parts):
        raise ValueError(f"the transformers checkpoint lacks part of {what}; is the file complete?")
    return torch.cat(parts, dim=0)


# ---------------------------------------------------------------------------------------------------- folders
def read_transformers_folder(folder: Path) -> StateDict:
    """The weights of a ``save_pretrained`` folder (``model.safetensors``, sharded or not, or ``pytorch_model.bin``),
    checked against its ``config.json``.

    Raises:
        FileNotFoundError: no ``model.safetensors`` (or its shard index) in ``folder``.
        ValueError: the config names a model type this codebase does not convert, or a setting (activation,
            LayerNorm epsilon, RoPE base, gated MLP) the timm models do not have.
    """
    from safetensors.torch import load_file

    check_transformers_config(folder / "config.json")
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        state: StateDict = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(folder / shard)))
        return state
    if (folder / "pytorch_model.bin").is_file():  # older Hub snapshots
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"'{folder}' is a folder without model.safetensors (or model.safetensors.index.json, "
                            "pytorch_model.bin); pass a save_pretrained folder or a weight file.")


def check_transformers_config(config: Path) -> None:
    """Check a transformers ``config.json`` (if present) against what the timm models compute.

    Raises:
        ValueError: an unknown model type, or a setting that differs from the timm model's fixed one.
    """
    if not config.is_file():
        return
    settings = json.loads(config.read_text())
    model_type = settings.get("model_type")
    if model_type not in _FIXED_CONFIG:
        raise ValueError(f"'{config}' is a transformers {model_type!r} model; the converters read "
                         f"{sorted(_FIXED_CONFIG)} ({DINOV2}, {DINOV2_REGISTERS}, {DINOV3}).")
    fixed_settings = dict(_FIXED_CONFIG[model_type])
    if model_type == "dinov3_vit":
        fixed_settings["hidden_act"] = _DINOV3_ACTIVATION[bool(settings.get("use_gated_mlp", False))]
    differ = {name: settings[name] for name, fixed in fixed_settings.items()
              if name in settings and settings[name] != fixed}
    if differ:
        raise ValueError(f"'{config}' sets {differ}, but the timm model the weights are converted to has "
                         f"{ {name: fixed_settings[name] for name in differ} }: it would compute "
                         "another function.")
