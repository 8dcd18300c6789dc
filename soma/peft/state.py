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
from collections.abc import Container
from typing import Any

import torch
import torch.nn as nn

from .base import AdapterLayer, AdapterModule
from .model import CONFIG_ATTR, adapter_layers, adapter_modules, method_trained_tensors
from .registry import PEFT_METHODS

# The `format` of the adapter files tools/extract_adapter.py writes and tools/merge_adapter.py reads.
ADAPTER_FORMAT = "soma-adapter-v1"
# 4: signed fingerprints that tell a sign flip or a fine-tuned base apart, and the method's other trained tensors
# (HF peft's bias="all"); 3: any adapter method (layer types, adapter modules, the method's name); 2: SoMA only.
FORMAT_VERSION = 4
# Relative tolerance of the fingerprint for float32/float64 base weights: a float32 merge-unmerge round trip moves
# the fingerprint by ~1e-7 at most, a change of the weights by 1e-5 of their norm (a sign flip: 2) is refused.
FINGERPRINT_RTOL = 1e-6
_FINGERPRINT_PROBES = 8


@torch.no_grad()
def weight_fingerprint(weight: torch.Tensor) -> torch.Tensor:
    """A float64 signature of a weight matrix (conv kernels are flattened to ``out × rest``).

    The Frobenius norm and 8 signed random projections ``aₖᵀ W bₖ`` with fixed-seed Gaussian unit vectors ``aₖ``,
    ``bₖ`` (drawn on the CPU, so every device computes the same signature). A change ``ΔW`` of the weights moves
    the projections by about ``‖ΔW‖/‖W‖`` of their size, whatever its sign pattern: ``-W``, a flipped row or a
    fine-tuned ``W`` are told apart, where statistics of ``|W|`` were not.

    Returns:
        A CPU tensor of ``1 + 8`` float64 values.
    """
    weight = weight.detach().to(torch.float64).reshape(weight.shape[0], -1)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(_FINGERPRINT_PROBES, weight.shape[0], generator=generator, dtype=torch.float64)
    cols = torch.randn(_FINGERPRINT_PROBES, weight.shape[1], generator=generator, dtype=torch.float64)
    rows = (rows / rows.norm(dim=1, keepdim=True)).to(weight.device)
    cols = (cols / cols.norm(dim=1, keepdim=True)).to(weight.device)
    projections = ((rows @ weight) * cols).sum(-1)
    return torch.cat([torch.linalg.matrix_norm(weight).view(1), projections]).cpu()


def fingerprint_difference(found: torch.Tensor, expected: torch.Tensor) -> float:
    """The relative difference of two :func:`weight_fingerprint` signatures: the larger of the norms' relative
    difference and ``‖P₁ − P₂‖ / ‖P₂‖`` over the projections ``P`` (``inf`` for signatures of another layout)."""
    found, expected = found.to(torch.float64).cpu(), expected.to(torch.float64).cpu()
    if found.shape != expected.shape or found.numel() != 1 + _FINGERPRINT_PROBES:
        return float("inf")
    norm = float((found[0] - expected[0]).abs() / expected[0].abs().clamp_min(1e-300))
    change = float((found[1:] - expected[1:]).norm())
    projections = change / max(float(expected[1:].norm()), 1e-300) if change else 0.0
    return max(norm, projections)


def fingerprint_tolerance(*dtypes: torch.dtype) -> float:
    """The fingerprint tolerance for base weights stored in ``dtypes`` (the saved model's and the loading one's).

    :data:`FINGERPRINT_RTOL`, or twice the machine epsilon of the coarsest floating dtype (bf16: 0.016, fp16:
    0.002) where that is larger: a merged low-precision weight holds the base weight only to its rounding.
    """
    return max([FINGERPRINT_RTOL] + [2 * torch.finfo(d).eps for d in dtypes if d.is_floating_point])


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
        ``{"format_version": 4, "method": str | None, "config": dict | None, "adapters": {"<layer>.<tensor>" |
        "<module>.<param>" | "<base tensor>": tensor}, "fingerprint": {layer: tensor}, "fingerprint_dtype":
        {layer: "torch.float32"}, "layers": {layer: {"type", **layer_info}}, "modules": {module: {param: shape}},
        "base_tensors": {key: shape}}``, tensors detached on the CPU. ``base_tensors`` are the tensors outside the
        adapters that the method trains (:func:`soma.peft.model.method_trained_tensors`); their values are in
        ``adapters`` too.

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
    base_tensors = method_trained_tensors(model)
    tensors.update(base_tensors)
    return {
        "format_version": FORMAT_VERSION,
        "method": _method_name(model, layers),
        "config": config.to_dict() if config is not None and hasattr(config, "to_dict") else None,
        "adapters": {key: tensor.detach().cpu().clone() for key, tensor in tensors.items()},
        "fingerprint": {name: residual_fingerprint(layer) for name, layer in layers.items()},
        "fingerprint_dtype": {name: str(layer.base_layer.weight.dtype) for name, layer in layers.items()},
        "layers": {name: _layer_facts(layer) for name, layer in layers.items()},
        "modules": {name: module.layer_info() for name, module in modules.items()},
        "base_tensors": {key: list(tensor.shape) for key, tensor in base_tensors.items()},
    }


def _check_state(state: Any) -> None:
    if not isinstance(state, dict) or not {"adapters", "fingerprint", "layers"} <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not an adapter state (from adapter_state_dict()): got {keys}.")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        why = (" (its base-weight fingerprint cannot tell a sign-flipped or fine-tuned base from the one it was "
               "trained on)" if isinstance(version, int) and version < 4 else "")
        raise ValueError(f"the adapter state has format_version {version!r}{why}; this version of soma.peft reads "
                         f"{FORMAT_VERSION}: save it again with adapter_state_dict() from the trained model "
                         "(tools/extract_adapter.py CONFIG CHECKPOINT OUT does so from a training checkpoint).")


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


def _check_module_options(name: str, module: AdapterModule, saved: dict[str, Any]) -> None:
    if saved == module.layer_info():
        return
    changes = module.option_changes(saved)
    if changes:
        options = "; ".join(f"{'/'.join(c.options)}={c.saved} (the model: {c.current})" for c in changes)
        raise ValueError(f"module '{name}': the adapter was saved with other {module.method_name} options: {options}. "
                         f"Apply {module.method_name} with the config stored in the file (state['config']).")


def _saved_dtype(state: dict[str, Any], name: str) -> torch.dtype:
    text = str(state.get("fingerprint_dtype", {}).get(name, "torch.float32"))
    dtype = getattr(torch, text.removeprefix("torch."), None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _check_fingerprint(name: str, layer: AdapterLayer, state: dict[str, Any]) -> None:
    expected = residual_fingerprint(layer)
    difference = fingerprint_difference(state["fingerprint"][name], expected)
    tolerance = fingerprint_tolerance(layer.base_layer.weight.dtype, _saved_dtype(state, name))
    if not difference <= tolerance:
        raise ValueError(f"adapter was trained on different base weights: layer '{name}' has a base weight whose "
                         f"fingerprint differs from the one the adapter was trained on by {difference:.1e} (relative; "
                         f"tolerance {tolerance:.0e}); load the base checkpoint it was trained from (and initialise "
                         "the adapters after loading it) before loading the adapter.")


def _tensors_to_copy(name: str, trained: dict[str, torch.Tensor], saved: dict[str, torch.Tensor],
                     strict: bool, base_tensors: Container[str] = ()) -> dict[str, torch.Tensor]:
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
    extra = [k for k in saved if k.startswith(prefix) and k[len(prefix):] not in trained and k not in base_tensors]
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
    slices, init mode, scale, ...), its base-weight fingerprint (relative tolerance :func:`fingerprint_tolerance`:
    1e-6 for float32 weights), each adapter module's parameter shapes, and the names and shapes of the other
    tensors the method trains (HF peft's ``bias="all"``). Values are loaded into the unmerged layer; a merged model
    is unmerged, loaded and merged again.

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
    saved_base, own_base = state.get("base_tensors", {}), method_trained_tensors(model)
    _compare_names("trained base tensors", set(saved_base), set(own_base), method, strict)
    plan = []  # (layer, or None for a module; its trained tensors; the saved values to copy into them)
    for name, layer in layers.items():
        if name in state["layers"]:
            _check_facts("layer", name, state["layers"][name], _layer_facts(layer))
            _check_fingerprint(name, layer, state)
            trained = layer.trained_tensors()
            plan.append((layer, trained, _tensors_to_copy(name, trained, state["adapters"], strict, saved_base)))
    for name, module in modules.items():
        if name in saved_modules:
            _check_module_options(name, module, saved_modules[name])
            _check_facts("module", name, saved_modules[name], module.layer_info())
            trained = module.trained_tensors()
            plan.append((None, trained, _tensors_to_copy(name, trained, state["adapters"], strict, saved_base)))
    base_values = {}
    for key, tensor in own_base.items():
        if key in saved_base:
            value = state["adapters"][key]
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(f"'{key}': the adapter has shape {tuple(value.shape)}, the model expects "
                                 f"{tuple(tensor.shape)}.")
            base_values[key] = value
    plan.append((None, own_base, base_values))
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
