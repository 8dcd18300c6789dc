"""A trained SoMA model as a standard Hugging Face peft LoRA adapter on the *original* pretrained weights.

SoMA trains ``W_res + s·B'A'`` where, at initialisation, ``W_res = W − s·B₀A₀`` (``init="minor"``/``"principal"``)
or ``W_res = W`` (``"lora"``, ``"released"``). The trained change relative to the pretrained ``W`` is therefore

    minor / principal:  s·(B'A' − B₀A₀) = [s·B', −s·B₀] [A'; A₀]     (rank ≤ 2r, exactly)
    lora / released:    s·B'A'                                       (rank ≤ r)

and a fused layer with ``splits`` slices (q/k/v) has a block-diagonal adapter, so the change of the whole layer is
one LoRA pair of rank ``splits`` times that. The factors are computed in float64 and written as peft writes a
LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``, keys ``base_model.model.<module>.lora_A.
weight``), with ``lora_alpha = r`` (peft's scaling 1: the SoMA scale is folded into ``lora_B``). Trained biases of
the adapted layers go in as peft's ``bias="lora_only"`` (peft saves and loads them as
``<module>.base_layer.bias``). Pure torch + safetensors: peft itself is only needed to load the result.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..utils.checkpoint import atomic_path, write_text_atomic
from .soma import SoMALinear, soma_layers

__all__ = ["ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME", "PEFT_KEY_PREFIX", "SoMAStart", "soma_start_state",
           "lora_factors", "peft_lora_adapter", "save_peft_lora_adapter"]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."  # how peft's PeftModel names the wrapped model's modules
# The trained residual may differ from the recomputed one by the rounding of the split, never by more.
RESIDUAL_RTOL = 1e-4


@dataclass
class SoMAStart:
    """One SoMA layer right after its initialisation on the pretrained weights (CPU copies).

    Attributes:
        residual: ``W_res`` at initialisation.
        lora_A, lora_B: the initial adapters ``A₀``, ``B₀``.
        bias: the pretrained bias (``None`` for a layer without one).
        init: the layer's init mode.
    """

    residual: torch.Tensor
    lora_A: torch.Tensor
    lora_B: torch.Tensor
    bias: torch.Tensor | None
    init: str

    @property
    def pretrained_weight(self) -> torch.Tensor:
        """``W`` in float64: the residual plus, for ``"minor"``/``"principal"``, the split-off part ``s·B₀A₀``."""
        weight = self.residual.to(torch.float64)
        return weight + self._initial_part() if self.init in ("minor", "principal") else weight

    def _initial_part(self) -> torch.Tensor:
        out_features, r = self.lora_B.shape
        splits = self.lora_A.shape[0] // r
        b = self.lora_B.to(torch.float64).view(splits, out_features // splits, r)
        a = self.lora_A.to(torch.float64).view(splits, r, -1)
        return torch.bmm(b, a).reshape(out_features, -1)


@torch.no_grad()
def soma_start_state(model: nn.Module) -> dict[str, SoMAStart]:
    """Snapshot every SoMA layer of ``model`` as initialised on the pretrained weights (unmerged).

    Call it right after the initialisation (``initialize_soma`` / the backbone's ``init_weights``), before trained
    weights are loaded; :func:`peft_lora_adapter` compares the trained model against it.

    Raises:
        ValueError: no SoMA layers, or a layer is merged.
    """
    layers = soma_layers(model)
    if not layers:
        raise ValueError("the model has no SoMA layers: there is no adapter to export.")
    if any(layer.merged for layer in layers.values()):
        raise ValueError("unmerge the SoMA layers (unmerge_soma) before taking their initial state.")
    def copy(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.detach().cpu().clone()

    return {name: SoMAStart(residual=copy(layer.base_layer.weight), lora_A=copy(layer.lora_A),
                            lora_B=copy(layer.lora_B), bias=copy(layer.base_layer.bias), init=layer.init)
            for name, layer in layers.items()}


@torch.no_grad()
def lora_factors(layer: SoMALinear, start: SoMAStart, name: str = "layer") -> tuple[torch.Tensor, torch.Tensor]:
    """``(lora_B, lora_A)`` in float64 with ``lora_B @ lora_A = W_res + s·B'A' − W`` (the trained change).

    Rank ``splits·2r`` for ``init="minor"``/``"principal"`` and ``splits·r`` for ``"lora"``/``"released"``,
    block-diagonal over the output slices of a fused layer.

    Raises:
        ValueError: the layer's residual is not the one ``start`` was split into (another base weight, or a merged
            model), or its shape/rank/init differ from ``start``.
    """
    if layer.merged:
        raise ValueError(f"layer '{name}' is merged; export from the unmerged model.")
    if tuple(layer.lora_A.shape) != tuple(start.lora_A.shape) or layer.init != start.init:
        raise ValueError(f"layer '{name}': rank/shape/init differ from its initial state (lora_A "
                         f"{tuple(layer.lora_A.shape)} vs {tuple(start.lora_A.shape)}, init {layer.init!r} vs "
                         f"{start.init!r}).")
    residual = layer.base_layer.weight.detach().to("cpu", torch.float64)
    expected = start.residual.to(torch.float64)
    difference = float(torch.linalg.matrix_norm(residual - expected) / torch.linalg.matrix_norm(expected))
    if not difference <= RESIDUAL_RTOL:
        raise ValueError(f"layer '{name}': the trained frozen weight differs from the one SoMA splits the base "
                         f"weights into (relative difference {difference:.1e} > {RESIDUAL_RTOL:g}); the checkpoint "
                         "was trained on other base weights than the config's `init_cfg`.")
    splits, r = layer.splits, layer.r
    rows = layer.out_features // splits
    trained_b = layer.lora_B.detach().to("cpu", torch.float64) * layer.scale
    trained_a = layer.lora_A.detach().to("cpu", torch.float64)
    with_start = start.init in ("minor", "principal")
    pieces = 2 * r if with_start else r
    lora_b = torch.zeros(layer.out_features, splits * pieces, dtype=torch.float64)
    a_blocks = []
    for index in range(splits):
        part, a_rows = slice(index * rows, (index + 1) * rows), slice(index * r, (index + 1) * r)
        columns = slice(index * pieces, index * pieces + r)
        lora_b[part, columns] = trained_b[part]
        a_blocks.append(trained_a[a_rows])
        if with_start:
            lora_b[part, index * pieces + r:(index + 1) * pieces] = -layer.scale * start.lora_B[part].to(torch.float64)
            a_blocks.append(start.lora_A[a_rows].to(torch.float64))
    return lora_b, torch.cat(a_blocks)


def _biases_changed(layers: Mapping[str, SoMALinear], start: Mapping[str, SoMAStart]) -> bool:
    return any(layer.base_layer.bias is not None
               and not torch.equal(layer.base_layer.bias.detach().cpu(), start[name].bias)
               for name, layer in layers.items())


@torch.no_grad()
def peft_lora_adapter(model: nn.Module, start: Mapping[str, SoMAStart], base_model_name_or_path: str | None = None,
                      dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The peft LoRA adapter (tensors by peft key, ``adapter_config.json`` content) of a trained SoMA model.

    Args:
        model: the model with SoMA applied and trained values loaded (unmerged); its module names are those of the
            plain model the adapter is for (e.g. a timm ViT: ``blocks.3.attn.qkv``).
        start: :func:`soma_start_state` of the same model before the trained values were loaded.
        base_model_name_or_path: recorded in the config (e.g. the timm architecture name).
        dtype: of the written tensors.

    Returns:
        ``(tensors, config)``: ``lora_A``/``lora_B`` of every adapted layer (and ``base_layer.bias`` when a bias
        changed, with ``bias="lora_only"``); the config has ``lora_alpha = r`` per layer (scaling 1), the layers
        whose rank is not the most common one in ``rank_pattern``/``alpha_pattern``.

    Raises:
        ValueError: no SoMA layers, layers missing from ``start``, or a layer on other base weights.
    """
    layers = soma_layers(model)
    if not layers:
        raise ValueError("the model has no SoMA layers: there is no adapter to export.")
    if set(layers) != set(start):
        only_model, only_start = sorted(set(layers) - set(start)), sorted(set(start) - set(layers))
        raise ValueError(f"the model's SoMA layers differ from the initial state's: only in the model "
                         f"{only_model[:5]}, only in the state {only_start[:5]}.")
    tensors, ranks = {}, {}
    for name, layer in layers.items():
        lora_b, lora_a = lora_factors(layer, start[name], name)
        tensors[f"{PEFT_KEY_PREFIX}{name}.lora_A.weight"] = lora_a.to(dtype).contiguous()
        tensors[f"{PEFT_KEY_PREFIX}{name}.lora_B.weight"] = lora_b.to(dtype).contiguous()
        ranks[name] = lora_a.shape[0]
    bias = "none"
    if _biases_changed(layers, start):
        bias = "lora_only"  # peft saves and loads the biases of its LoRA layers
        for name, layer in layers.items():
            if layer.base_layer.bias is not None:
                tensors[f"{PEFT_KEY_PREFIX}{name}.base_layer.bias"] = layer.base_layer.bias.detach().cpu().to(dtype)
    rank = Counter(ranks.values()).most_common(1)[0][0]
    others = {name: value for name, value in ranks.items() if value != rank}
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model_name_or_path,
        "inference_mode": True,
        "r": rank,
        "lora_alpha": rank,  # scaling alpha / r = 1: the SoMA scale is in lora_B
        "rank_pattern": others,
        "alpha_pattern": dict(others),
        "target_modules": sorted(layers),
        "lora_dropout": 0.0,
        "fan_in_fan_out": False,
        "bias": bias,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
    }
    return tensors, config


def save_peft_lora_adapter(out_dir: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                           config: Mapping[str, Any]) -> None:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` into ``out_dir`` (created), each atomically."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / ADAPTER_WEIGHTS_NAME) as path:
        save_file(dict(tensors), path, metadata={"format": "pt"})
    write_text_atomic(out / ADAPTER_CONFIG_NAME, json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
