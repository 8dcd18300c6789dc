"""Adapter-only state dicts of adapted models, tied to their base weights by a fingerprint (any adapter method).

An adapter is only meaningful on top of the frozen base weight it was trained with (SoMA's residual ``W_res``,
LoRA's and DoRA's ``W``): the same adapter on other base weights (another checkpoint, or random init because the
pretrained weights were never loaded) silently computes something else. :func:`adapter_state_dict` therefore
stores, next to the trained tensors of every :class:`~soma.peft.base.AdapterLayer`, a small float64 signature
of its frozen base weight and the facts of :meth:`~soma.peft.base.AdapterLayer.layer_info`, and the parameters
(with their shapes) of every :class:`~soma.peft.base.AdapterModule`. :func:`load_adapter_state_dict` refuses a
file whose layers, facts, shapes or signatures do not match the model.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn as nn

from .base import AdapterLayer
from .model import CONFIG_ATTR, adapter_layers, adapter_modules
from .registry import PEFT_METHODS

# 3: any adapter method (layer types, adapter modules, the method's name); 2: SoMA only.
FORMAT_VERSION = 3
FINGERPRINT_RTOL = 1e-4
_FINGERPRINT_PROBES = 4


@torch.no_grad()
def weight_fingerprint(weight: torch.Tensor) -> torch.Tensor:
    """A float64 signature of a weight matrix (conv kernels are flattened to ``out × rest``).

    The Frobenius norm and a few fixed-seed random projections ``aᵀ|W|b / (Σa Σb)`` with positive weights
    ``a, b ∈ [0.5, 1.5)``. Positive weights average the independent rounding errors of a bf16/fp16 merge–unmerge
    round trip away (relative change ~ε/√(out·in)), while signed random projections would move by ~ε itself;
    different weight matrices still differ far above the 1e-4 tolerance.

    Returns:
        A CPU tensor of ``1 + 4`` positive float64 values.
    """
    weight = weight.detach().to(torch.float64).reshape(weight.shape[0], -1)
    generator = torch.Generator().manual_seed(0)
    rows = torch.rand(_FINGERPRINT_PROBES, weight.shape[0], generator=generator, dtype=torch.float64) + 0.5
    cols = torch.rand(_FINGERPRINT_PROBES, weight.shape[1], generator=generator, dtype=torch.float64) + 0.5
    rows, cols = rows.to(weight.device), cols.to(weight.device)
    projections = ((rows @ weight.abs()) * cols).sum(-1) / (rows.sum(-1) * cols.sum(-1))
    return torch.cat([torch.linalg.matrix_norm(weight).view(1), projections]).cpu()


def residual_fingerprint(layer: AdapterLayer) -> torch.Tensor:
    """The :func:`weight_fingerprint` of ``layer``'s frozen base weight, identical whether merged or not."""
    return weight_fingerprint(layer.frozen_weight(torch.float64))


def _layer_facts(layer: AdapterLayer) -> dict[str, Any]:
    return {"type": layer.layer_type, **layer.layer_info()}


def _method_name(model: nn.Module, layers: dict[str, AdapterLayer]) -> str | None:
    config = getattr(model, CONFIG_ATTR, None)
    registered = [m.name for m in PEFT_METHODS.values() if config is not None and type(config) is m.config_class]
    if registered:
        return registered[0]
    kinds = {layer.method_name for layer in layers.values()} | {m.method_name for m in adapter_modules(model).values()}
    return kinds.pop() if len(kinds) == 1 else None


def adapter_state_dict(model: nn.Module) -> dict[str, Any]:
    """The trained tensors of ``model``'s adapters, with its method, config and base-weight fingerprints.

    The tensors are the same whether the model is merged or not.

    Returns:
        ``{"format_version": 3, "method": str | None, "config": dict | None, "adapters": {"<layer>.<tensor>" |
        "<module>.<param>": tensor}, "fingerprint": {layer: tensor}, "layers": {layer: {"type", **layer_info}},
        "modules": {module: {param: shape}}}``, tensors detached on the CPU.

    Raises:
        ValueError: the model has no adapters.
    """
    layers, modules = adapter_layers(model), adapter_modules(model)
    if not layers and not modules:
        raise ValueError("the model has no adapters; apply an adapter method (e.g. apply_soma()) before saving them.")
    config = getattr(model, CONFIG_ATTR, None)
    tensors = {f"{name}.{key}": tensor for name, layer in layers.items()
               for key, tensor in layer.trained_tensors().items()}
    tensors.update({f"{name}.{key}": tensor for name, module in modules.items()
                    for key, tensor in module.trained_tensors().items()})
    return {
        "format_version": FORMAT_VERSION,
        "method": _method_name(model, layers),
        "config": config.to_dict() if config is not None and hasattr(config, "to_dict") else None,
        "adapters": {key: tensor.detach().cpu().clone() for key, tensor in tensors.items()},
        "fingerprint": {name: residual_fingerprint(layer) for name, layer in layers.items()},
        "layers": {name: _layer_facts(layer) for name, layer in layers.items()},
        "modules": {name: module.layer_info() for name, module in modules.items()},
    }


def _check_state(state: Any) -> None:
    if not isinstance(state, dict) or not {"adapters", "fingerprint", "layers"} <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not an adapter state (from adapter_state_dict()): got {keys}.")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"the adapter state has format_version {state.get('format_version')!r}; this version of "
                         f"soma.peft reads {FORMAT_VERSION}. Export it again with adapter_state_dict() (soma.peft "
                         "of the version that wrote it can still load it into the model).")


def _same(saved: Any, current: Any) -> bool:
    if isinstance(saved, float) and isinstance(current, float):
        return math.isclose(saved, current, rel_tol=1e-12)
    return saved == current


def _check_facts(kind: str, name: str, saved: dict[str, Any], current: dict[str, Any]) -> None:
    for key, value in current.items():
        if not _same(saved.get(key), value):
            facts = lambda info: ", ".join(f"{k}={v}" for k, v in info.items())  # noqa: E731
            raise ValueError(f"{kind} '{name}': the adapter has {key}={saved.get(key)!r} but the model has {value!r} "
                             f"(adapter: {facts(saved)}; model: {facts(current)}). Apply the adapter method with "
                             "the config stored in the file (state['config']).")


def _check_fingerprint(name: str, layer: AdapterLayer, state: dict[str, Any]) -> None:
    expected = residual_fingerprint(layer)
    found = state["fingerprint"][name].to(torch.float64).cpu()
    difference = float(((found - expected).abs() / expected.abs().clamp_min(1e-300)).max()) \
        if found.shape == expected.shape else float("inf")
    if not difference <= FINGERPRINT_RTOL:
        raise ValueError(f"adapter was trained on different base weights: layer '{name}' has base-weight fingerprint "
                         f"{expected.tolist()} but the adapter expects {found.tolist()} (relative difference "
                         f"{difference:.1e} > {FINGERPRINT_RTOL:g}); load the base checkpoint it was trained from "
                         "(and initialise the adapters after loading it) before loading the adapter.")


def _tensors_to_copy(name: str, trained: dict[str, torch.Tensor], saved: dict[str, torch.Tensor],
                     strict: bool) -> dict[str, torch.Tensor]:
    """The saved values of ``name``'s trained tensors, by key relative to ``name``, after shape checks."""
    tensors = {}
    for key, param in trained.items():
        value = saved.get(f"{name}.{key}")
        if value is None:
            if strict:
                raise ValueError(f"the adapter state lacks '{name}.{key}' (was it trained with another "
                                 "`train_bias`?); pass strict=False to keep the model's value.")
            continue
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"'{name}.{key}': the adapter has shape {tuple(value.shape)}, the model expects "
                             f"{tuple(param.shape)}.")
        tensors[key] = value
    prefix = f"{name}."
    extra = [k for k in saved if k.startswith(prefix) and k[len(prefix):] not in trained]
    if extra and strict:
        raise ValueError(f"the adapter state has {extra} which '{name}' does not train (another `train_bias`?); "
                         "pass strict=False to ignore them.")
    return tensors


def _compare_names(kind: str, saved: set[str], own: set[str], method: str, strict: bool) -> None:
    if saved == own:
        return
    only_file, only_model = sorted(saved - own), sorted(own - saved)
    message = (f"the adapter state and the model have different {method} {kind}: only in the state "
               f"{only_file[:5]}{'...' if len(only_file) > 5 else ''}, only in the model "
               f"{only_model[:5]}{'...' if len(only_model) > 5 else ''}")
    if strict:
        raise ValueError(message + "; apply the adapter method with the config stored in the state "
                                   "(state['config']).")
    warnings.warn(message + f"; loading the common {kind} only.", stacklevel=3)


@torch.no_grad()
def load_adapter_state_dict(model: nn.Module, state: dict[str, Any], strict: bool = True) -> nn.Module:
    """Load adapters saved by :func:`adapter_state_dict` into ``model``, which has the same method applied.

    Every check runs before any value is copied: each layer's type and :meth:`layer_info` facts (shape, rank,
    slices, init mode, scale, ...), its base-weight fingerprint (relative tolerance 1e-4), and each adapter
    module's parameter shapes. Values are loaded into the unmerged layer; a merged model is unmerged, loaded and
    merged again.

    Args:
        model: the model, with the adapter method applied (same config) on the base weights the adapters were
            trained on.
        state: the output of :func:`adapter_state_dict`.
        strict: require the same set of adapter layers/modules and of trained tensors. ``False`` loads the ones
            present in both (warning about the rest); mismatched facts, shapes and fingerprints are refused either
            way.

    Returns:
        ``model``.

    Raises:
        ValueError: a malformed state, different layers (strict), another shape/rank, or another base weight.
    """
    _check_state(state)
    layers, modules = adapter_layers(model), adapter_modules(model)
    if not layers and not modules:
        raise ValueError(f"the model has no adapters; apply the adapter method ({state.get('method')}) with the config "
                         "stored in the adapter state (state['config']) before loading.")
    method = state.get("method") or "adapter"
    saved_modules = state.get("modules", {})
    _compare_names("layers", set(state["layers"]), set(layers), method, strict)
    _compare_names("modules", set(saved_modules), set(modules), method, strict)
    plan = []  # (layer, or None for a module; its trained tensors; the saved values to copy into them)
    for name, layer in layers.items():
        if name in state["layers"]:
            _check_facts("layer", name, state["layers"][name], _layer_facts(layer))
            _check_fingerprint(name, layer, state)
            trained = layer.trained_tensors()
            plan.append((layer, trained, _tensors_to_copy(name, trained, state["adapters"], strict)))
    for name, module in modules.items():
        if name in saved_modules:
            _check_facts("module", name, saved_modules[name], module.layer_info())
            trained = module.trained_tensors()
            plan.append((None, trained, _tensors_to_copy(name, trained, state["adapters"], strict)))
    for layer, trained, values in plan:
        was_merged = layer is not None and layer.merged
        if was_merged:
            layer.unmerge()
        for key, value in values.items():
            trained[key].copy_(value)
        if was_merged:
            layer.merge()
    return model


# The names of the SoMA-only API; they act on every adapter method.
soma_state_dict = adapter_state_dict
load_soma_state_dict = load_adapter_state_dict
