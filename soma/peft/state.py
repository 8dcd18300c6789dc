"""Adapter-only state dicts of SoMA models, tied to their base weights by a fingerprint (arXiv:2412.04077).

A SoMA adapter is only meaningful on top of the frozen residual ``W_res`` it was trained with: the same
adapter on other base weights (another checkpoint, or random init because the pretrained weights were never
loaded) silently computes something else. :func:`soma_state_dict` therefore stores, next to the adapters and
trained biases, a small float64 signature of every layer's residual, and :func:`load_soma_state_dict` refuses
a file whose signatures do not match the model.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn

from .layer import SoMALinear
from .model import CONFIG_ATTR, soma_layers

FORMAT_VERSION = 2  # 2: positive-weighted fingerprint and per-layer metadata
FINGERPRINT_RTOL = 1e-4
_FINGERPRINT_PROBES = 4
_LAYER_FIELDS = ("out_features", "in_features", "r", "splits", "init")


@torch.no_grad()
def residual_fingerprint(layer: SoMALinear) -> torch.Tensor:
    """A float64 signature of ``layer``'s frozen residual, identical whether the layer is merged or not.

    The Frobenius norm of ``W_res`` and a few fixed-seed random projections ``aᵀ|W_res|b / (Σa Σb)`` with
    positive weights ``a, b ∈ [0.5, 1.5)``. Positive weights average the independent rounding errors of a
    bf16/fp16 merge–unmerge round trip away (relative change ~ε/√(out·in)), while signed random projections
    would move by ~ε itself; different weight matrices still differ far above the 1e-4 tolerance.

    Returns:
        A CPU tensor of ``1 + 4`` positive float64 values.
    """
    weight = layer.residual_weight(torch.float64)
    generator = torch.Generator().manual_seed(0)
    rows = torch.rand(_FINGERPRINT_PROBES, layer.out_features, generator=generator, dtype=torch.float64) + 0.5
    cols = torch.rand(_FINGERPRINT_PROBES, layer.in_features, generator=generator, dtype=torch.float64) + 0.5
    rows, cols = rows.to(weight.device), cols.to(weight.device)
    projections = ((rows @ weight.abs()) * cols).sum(-1) / (rows.sum(-1) * cols.sum(-1))
    return torch.cat([torch.linalg.matrix_norm(weight).view(1), projections]).cpu()


def _layer_info(layer: SoMALinear) -> dict[str, Any]:
    return {"out_features": layer.out_features, "in_features": layer.in_features, "r": layer.r,
            "splits": layer.splits, "init": layer.init, "scale": layer.scale, "train_bias": layer.train_bias}


def _trained_tensors(layer: SoMALinear) -> dict[str, torch.Tensor]:
    """The layer's trained tensors by key suffix: adapters, and the bias when it is trained (by structure)."""
    tensors = {"lora_A": layer.lora_A, "lora_B": layer.lora_B}
    if layer.train_bias and layer.base_layer.bias is not None:
        tensors["base_layer.bias"] = layer.base_layer.bias
    return tensors


def soma_state_dict(model: nn.Module) -> dict[str, Any]:
    """Adapters and trained biases of ``model``, with its SoMA config and base-weight fingerprints.

    The adapters are the same whether the model is merged or not.

    Returns:
        ``{"format_version": int, "config": dict | None, "adapters": {"<layer>.lora_A" | "<layer>.lora_B" |
        "<layer>.base_layer.bias": tensor}, "fingerprint": {layer: tensor}, "layers": {layer: {shape, r,
        splits, init, scale, train_bias}}}``, tensors detached on the CPU.

    Raises:
        ValueError: the model has no SoMA layers.
    """
    layers = soma_layers(model)
    if not layers:
        raise ValueError("the model has no SoMA layers; apply_soma() it before saving its adapters.")
    config = getattr(model, CONFIG_ATTR, None)
    return {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict() if config is not None else None,
        "adapters": {f"{name}.{key}": tensor.detach().cpu().clone()
                     for name, layer in layers.items() for key, tensor in _trained_tensors(layer).items()},
        "fingerprint": {name: residual_fingerprint(layer) for name, layer in layers.items()},
        "layers": {name: _layer_info(layer) for name, layer in layers.items()},
    }


def _check_state(state: Any) -> None:
    if not isinstance(state, dict) or not {"adapters", "fingerprint", "layers"} <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a SoMA adapter state (from soma_state_dict()): got {keys}.")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"SoMA adapter state has format_version {state.get('format_version')!r}; this version "
                         f"of soma.peft reads {FORMAT_VERSION}. Re-export it with soma_state_dict().")


def _check_layer(name: str, layer: SoMALinear, state: dict[str, Any], strict: bool) -> dict[str, torch.Tensor]:
    """Validate one layer of ``state`` against ``layer``; returns the tensors to copy, by key suffix."""
    saved, current = state["layers"][name], _layer_info(layer)
    for key in _LAYER_FIELDS:
        if saved.get(key) != current[key]:
            raise ValueError(
                f"layer '{name}': the adapter has {key}={saved.get(key)!r} but the model has {current[key]!r} "
                f"(adapter: r={saved.get('r')}, splits={saved.get('splits')} on a {saved.get('out_features')}x"
                f"{saved.get('in_features')} weight; model: r={layer.r}, splits={layer.splits} on a "
                f"{layer.out_features}x{layer.in_features} weight). Apply SoMA with the config stored in the file.")
    if abs(saved.get("scale", float("nan")) - layer.scale) > 1e-12 * layer.scale:
        raise ValueError(f"layer '{name}': the adapter was trained with scale alpha/r={saved.get('scale')}, "
                         f"the model has {layer.scale}; use the same `alpha`.")
    expected = residual_fingerprint(layer)
    found = state["fingerprint"][name].to(torch.float64).cpu()
    difference = float(((found - expected).abs() / expected.abs().clamp_min(1e-300)).max()) \
        if found.shape == expected.shape else float("inf")
    if not difference <= FINGERPRINT_RTOL:
        raise ValueError(f"adapter was trained on different base weights: layer '{name}' has residual fingerprint "
                         f"{expected.tolist()} but the adapter expects {found.tolist()} (relative difference "
                         f"{difference:.1e} > {FINGERPRINT_RTOL:g}); load the base checkpoint it was trained from "
                         "(and take the SVD split after loading it) before loading the adapter.")
    tensors = {}
    for key, param in _trained_tensors(layer).items():
        value = state["adapters"].get(f"{name}.{key}")
        if value is None:
            if strict:
                raise ValueError(f"the adapter state lacks '{name}.{key}' (was it trained with another "
                                 "`train_bias`?); pass strict=False to keep the model's value.")
            continue
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"'{name}.{key}': the adapter has shape {tuple(value.shape)}, the model expects "
                             f"{tuple(param.shape)}.")
        tensors[key] = value
    extra = [k for k in state["adapters"] if k.startswith(f"{name}.") and k[len(name) + 1:] not in tensors]
    if extra and strict:
        raise ValueError(f"the adapter state has {extra} which layer '{name}' does not train (another "
                         "`train_bias`?); pass strict=False to ignore them.")
    return tensors


@torch.no_grad()
def load_soma_state_dict(model: nn.Module, state: dict[str, Any], strict: bool = True) -> nn.Module:
    """Load adapters saved by :func:`soma_state_dict` into ``model``, which has SoMA applied already.

    Every check runs before any value is copied: each layer's shape, rank, slices, init mode and scale, and
    its base-weight fingerprint (relative tolerance 1e-4). Values are loaded into the unmerged layer; a merged
    model is unmerged, loaded and merged again.

    Args:
        model: the model, with SoMA applied (same config) on the base weights the adapters were trained on.
        state: the output of :func:`soma_state_dict`.
        strict: require the same set of SoMA layers and of trained tensors. ``False`` loads the layers present
            in both (warning about the rest); mismatched shapes and fingerprints are refused either way.

    Returns:
        ``model``.

    Raises:
        ValueError: a malformed state, different layers (strict), another shape/rank, or another base weight.
    """
    _check_state(state)
    layers = soma_layers(model)
    if not layers:
        raise ValueError("the model has no SoMA layers; apply_soma() it with the config stored in the adapter "
                         "state (state['config']) before loading.")
    saved_names, model_names = set(state["layers"]), set(layers)
    if saved_names != model_names:
        only_file, only_model = sorted(saved_names - model_names), sorted(model_names - saved_names)
        message = (f"the adapter state and the model have different SoMA layers: only in the state "
                   f"{only_file[:5]}{'...' if len(only_file) > 5 else ''}, only in the model "
                   f"{only_model[:5]}{'...' if len(only_model) > 5 else ''}")
        if strict:
            raise ValueError(message + "; apply SoMA with the config stored in the state (state['config']).")
        warnings.warn(message + "; loading the common layers only.", stacklevel=2)
    names = [name for name in layers if name in saved_names]
    plan = {name: _check_layer(name, layers[name], state, strict) for name in names}
    for name, tensors in plan.items():
        layer = layers[name]
        was_merged = layer.merged
        layer.unmerge()
        for key, value in tensors.items():
            layer.get_parameter(key).copy_(value)
        if was_merged:
            layer.merge()
    return model
