"""Model-level adapter functions for every method: injection, freezing, finding, merging, unloading, counting.

Follows peft's ``inject_adapter`` / ``_mark_only_adapters_as_trainable`` / ``merge_and_unload``: targets are
found by module name (exact, dotted suffix or one regex), wrapped by composition, and the trainable parameters
are chosen by visiting the adapter layers and modules (:mod:`soma.peft.base`) rather than by matching
parameter names. Nothing here names a method: SoMA, DoRA and HF peft layers are all :class:`AdapterLayer`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from .base import AdapterLayer, AdapterModule, as_adapter_layer, layer_tensor_names, module_tensor_names

# The attribute under which a method's apply() records its config on the model (read by adapter_state_dict()).
CONFIG_ATTR = "adapter_config"


# ---------------------------------------------------------------------------------------------- finding
def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """Every adapted layer of ``model`` (any method, HF peft layers through their view), by module name."""
    found = {}
    for name, module in model.named_modules():
        layer = as_adapter_layer(module)
        if layer is not None:
            found[name] = layer
    return found


def adapter_modules(model: nn.Module) -> dict[str, AdapterModule]:
    """Every :class:`AdapterModule` of ``model`` (trained and saved, never merged), by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AdapterModule)}


def adapter_keys(model: nn.Module) -> dict[str, str]:
    """The state-dict keys of ``model``'s adapter tensors, each mapped to its adapter layer or module's name.

    Found by visiting the adapters (:func:`adapter_layers`, :func:`adapter_modules`), never by matching names: a
    layer's keys outside its base layer and every key of an adapter module. A head's ``tokens`` is therefore no
    adapter key, and every tensor of Rein's module is one.
    """
    owners = {name: f"{name}.{layer.base_layer_name}." for name, layer in adapter_layers(model).items() if name}
    owners.update({name: None for name in adapter_modules(model) if name})
    found = {}
    for key in model.state_dict(keep_vars=True):
        for name, base_prefix in owners.items():
            if key.startswith(name + ".") and not (base_prefix and key.startswith(base_prefix)):
                found[key] = name
                break
    return found


def _layer_of_key(key: str, names: frozenset[str]) -> str | None:
    # An adapter layer's tensor is `<layer>.<name>`, or `<layer>.<name>.<adapter>[.<param>]` in HF peft layers.
    parts = key.split(".")
    for index in range(len(parts) - 1, max(len(parts) - 4, 0), -1):
        if parts[index] in names:
            return ".".join(parts[:index])
    return None


def state_adapter_keys(keys: Iterable[str]) -> dict[str, str]:
    """The adapter keys among a state dict's ``keys``, each mapped to its adapter layer or module (no model needed).

    For a file without its model. A key is an adapted layer's tensor if it ends in an adapter layer class's tensor
    name (``"...qkv.lora_A"``, HF peft's ``"...qkv.lora_A.default.weight"``); a module ``<m>`` is an adapter module
    if some key ``<m>.<name>`` ends in a parameter name an adapter module class declares (Rein's ``token_a``), and
    then every key under ``<m>.`` is its (``"...rein.token_mlp.weight"``). With a model at hand,
    :func:`adapter_keys` is exact.
    """
    keys = list(keys)
    layer_names, module_names = layer_tensor_names(), module_tensor_names()
    modules = {key.rpartition(".")[0] for key in keys if "." in key and key.rpartition(".")[2] in module_names}
    found = {}
    for key in keys:
        owner = next((m for m in modules if key.startswith(m + ".")), None) or _layer_of_key(key, layer_names)
        if owner is not None:
            found[key] = owner
    return found


def adapter_key_layer(key: str) -> str | None:
    """The adapter layer or module a single state-dict key belongs to, or ``None`` (see :func:`state_adapter_keys`).

    ``"backbone.vit.blocks.8.attn.qkv.lora_A"`` → ``"backbone.vit.blocks.8.attn.qkv"``. One key alone only shows
    the tensors that name their module (an adapter module's other tensors need the whole key set).
    """
    return state_adapter_keys([key]).get(key)


def is_adapter_key(key: str) -> bool:
    """Whether a single state-dict key holds an adapter tensor (not a base weight); see :func:`adapter_key_layer`."""
    return adapter_key_layer(key) is not None


# ---------------------------------------------------------------------------------------------- injecting
def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def check_not_adapted(model: nn.Module) -> None:
    """Refuse to adapt a model that already has adapter layers."""
    layers = adapter_layers(model)
    if layers:
        kinds = sorted({layer.layer_type for layer in layers.values()})
        raise ValueError(f"adapters are already applied to this model ({len(layers)} adapter layers: {kinds}); "
                         "call unload_adapters(model) first to apply them again.")


def method_trained_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors outside the adapter layers and modules that the applied method trains, by state-dict key.

    Asked of the config recorded on ``model`` (:meth:`soma.peft.registry.MethodConfig.trained_base_tensors`), e.g.
    every bias of the model for HF peft's ``bias="all"``; tensors an adapter layer or module trains already are
    left out.
    """
    config = getattr(model, CONFIG_ATTR, None)
    select = getattr(config, "trained_base_tensors", None)
    if select is None:
        return {}
    owned = {id(t) for layer in adapter_layers(model).values() for t in layer.trained_tensors().values()}
    owned |= {id(t) for module in adapter_modules(model).values() for t in module.trained_tensors().values()}
    return {key: tensor for key, tensor in select(model).items() if id(tensor) not in owned}


def mark_only_adapters_trainable(model: nn.Module) -> nn.Module:
    """Freeze ``model`` except the adapter layers' trained tensors, the adapter modules' parameters and the other
    tensors the method's config trains (:func:`method_trained_tensors`)."""
    trained = [t for layer in adapter_layers(model).values() for t in layer.trained_tensors().values()]
    trained += [t for module in adapter_modules(model).values() for t in module.trained_tensors().values()]
    trained += list(method_trained_tensors(model).values())
    model.requires_grad_(False)
    for tensor in trained:  # chosen before freezing: a method may decide by the current flags (foreign layers)
        tensor.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------------------------- merging
def merge_adapters(model: nn.Module, safe_merge: bool = False) -> nn.Module:
    """Fold every adapter layer into its base weight (idempotent); adapter modules stay as they are."""
    for layer in adapter_layers(model).values():
        layer.merge(safe_merge=safe_merge)
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_adapters` (idempotent)."""
    for layer in adapter_layers(model).values():
        layer.unmerge()
    return model


@torch.no_grad()
def unload_adapters(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every adapter layer by its plain base layer, in place (peft's ``merge_and_unload``).

    Args:
        model: a model with adapters applied.
        merge: ``True`` keeps the adapted function. ``False`` drops the adapters and keeps only the frozen base
            weight, which for SoMA ``init="minor"``/``"principal"`` is *not* the pretrained weight (it lacks the
            rank-r part); for LoRA and DoRA it is.

    Returns:
        ``model``, with no adapter layers left and ``model.adapter_config`` removed. Adapter modules (which have
        no base weight to fold into) stay. ``requires_grad`` flags of the kept weights are left as they were.
    """
    for name, layer in adapter_layers(model).items():
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        if name:
            set_submodule(model, name, layer.unwrapped())
    if hasattr(model, CONFIG_ATTR) and not adapter_modules(model):
        delattr(model, CONFIG_ATTR)
    return model


# ---------------------------------------------------------------------------------------------- counting
@dataclass
class TrainableSummary:
    """Parameter counts of a model with adapters applied.

    Attributes:
        adapter: trainable adapter tensors of the adapter layers and parameters of the adapter modules.
        bias: trainable tensors of the adapted layers' base layers (their biases), and the other base-model
            tensors the method trains (HF peft's ``bias="all"``: every bias).
        other_trainable: any other trainable parameter (e.g. a head the caller left trainable).
        trainable: the sum of the three.
        total: all parameters of the model (shared parameters counted once).
        adapted_layers: number of adapted weight matrices: a fused q/k/v layer adapted slice by slice counts as
            its 3 slices, so a fused and an unfused attention count alike (DINOv2-L, blocks 8-23: 16 × (3 + 3)).
    """

    adapter: int
    bias: int
    other_trainable: int
    trainable: int
    total: int
    adapted_layers: int

    def __str__(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        return (f"trainable {self.trainable:,} / {self.total:,} ({share:.2f}%): adapters {self.adapter:,}, "
                f"biases {self.bias:,}, other {self.other_trainable:,} in {self.adapted_layers} adapted layers")


def trainable_parameters(model: nn.Module) -> TrainableSummary:
    """Count trainable parameters by kind: adapters, base-layer tensors of adapted layers, anything else.

    Works on meta-device models (only shapes are read).
    """
    layers = list(adapter_layers(model).values())
    adapter_ids, bias_ids = set(), set()
    for layer in layers:
        for name, tensor in layer.trained_tensors().items():
            (bias_ids if name.startswith(layer.base_layer_name + ".") else adapter_ids).add(id(tensor))
    adapter_ids |= {id(p) for module in adapter_modules(model).values() for p in module.parameters()}
    bias_ids |= {id(tensor) for tensor in method_trained_tensors(model).values()}
    counts = {"adapter": 0, "bias": 0, "other_trainable": 0}
    total = 0
    for param in model.parameters():  # yields shared parameters once
        total += param.numel()
        if param.requires_grad:
            kind = "adapter" if id(param) in adapter_ids else "bias" if id(param) in bias_ids else "other_trainable"
            counts[kind] += param.numel()
    return TrainableSummary(trainable=sum(counts.values()), total=total,
                            adapted_layers=sum(layer.adapted_matrices for layer in layers), **counts)


# ---------------------------------------------------------------------------------------------- SoMA names
# The names the SoMA-only API had; they act on every adapter method.
merge_soma = merge_adapters
unmerge_soma = unmerge_adapters
unload_soma = unload_adapters
