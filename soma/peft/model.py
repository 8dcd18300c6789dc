"""Injecting SoMA into any ``nn.Module``: selection, freezing, merging and adapter state dicts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .config import SoMAConfig
from .layer import SoMALinear

STATE_FORMAT_VERSION = 1
_FINGERPRINT_PROBES = 4
_FINGERPRINT_RTOL = 1e-4


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def soma_layers(model: nn.Module) -> dict[str, SoMALinear]:
    """All SoMA layers of ``model`` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SoMALinear)}


def apply_soma(model: nn.Module, config: SoMAConfig | dict, initialize: bool = True) -> nn.Module:
    """Wrap the targeted ``nn.Linear`` layers of ``model`` in :class:`SoMALinear`, in place.

    Every parameter of ``model`` is frozen; then the adapters (and, with ``train_bias``, the biases of the
    adapted layers) are made trainable by visiting the SoMA layers — never by matching parameter names.

    Args:
        model: any module (a timm ViT, a diffusers UNet, an ``nn.Sequential``).
        config: a :class:`SoMAConfig` or a dict of its fields.
        initialize: take the SVD split now. Use ``False`` when the pretrained weights are loaded after the
            structure is built, then call :func:`initialize_soma` once they are in place.

    Returns:
        ``model`` itself, with ``model.soma_config`` set.

    Raises:
        ValueError: SoMA is already applied, or no module matches ``target_modules``.
        TypeError: a matched module is not an ``nn.Linear``.
    """
    if isinstance(config, dict):
        config = SoMAConfig.from_dict(config)
    if soma_layers(model):
        raise ValueError("SoMA is already applied to this model; call unload_soma() before applying it again.")
    named_targets = [(n, m) for n, m in model.named_modules() if n and config.is_target(n)]
    if not named_targets:
        examples = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:8]
        raise ValueError(f"no module matches `target_modules`={config.target_modules!r} in blocks "
                         f">= {config.start_block}; Linear modules of this model include {examples}.")
    for name, module in named_targets:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target module '{name}' is a {type(module).__name__}; SoMA adapts nn.Linear only. "
                            "Make `target_modules` more specific (e.g. 'attn.proj' instead of 'proj').")
    model.requires_grad_(False)
    for name, module in named_targets:
        rank = config.rank_for(name)
        if rank == 0:
            continue
        layer = SoMALinear(module, rank, alpha=config.alpha, init=config.init, splits=config.splits_for(name),
                           train_bias=config.train_bias, svd_method=config.svd_method, initialize=initialize)
        _set_submodule(model, name, layer)
    model.soma_config = config
    return model


def initialize_soma(model: nn.Module) -> nn.Module:
    """Take the SVD split of every SoMA layer from its current weights (after loading pretrained weights)."""
    for layer in soma_layers(model).values():
        layer.initialize()
    return model


def merge_soma(model: nn.Module) -> nn.Module:
    """Fold all adapters into their base weights (idempotent)."""
    for layer in soma_layers(model).values():
        layer.merge()
    return model


def unmerge_soma(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_soma` (idempotent)."""
    for layer in soma_layers(model).values():
        layer.unmerge()
    return model


@torch.no_grad()
def unload_soma(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every SoMA layer by a plain ``nn.Linear``.

    Args:
        merge: keep the adapted function (weight ``W_res + scale·BA``). ``False`` drops the adapters and keeps
            only the residual.
    """
    for name, layer in soma_layers(model).items():
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        _set_submodule(model, name, layer.base_layer)
    if hasattr(model, "soma_config"):
        del model.soma_config
    return model


def _fingerprint(layer: SoMALinear) -> torch.Tensor:
    """A float64 signature of the frozen residual: its norm and a few fixed random projections."""
    residual = layer.residual_weight().detach().to(torch.float64).cpu()
    generator = torch.Generator().manual_seed(0)
    probes = torch.randn(layer.in_features, _FINGERPRINT_PROBES, generator=generator, dtype=torch.float64)
    weights = torch.randn(layer.out_features, generator=generator, dtype=torch.float64)
    return torch.cat([residual.norm().view(1), weights @ (residual @ probes)])


def _trained_params(layer: SoMALinear) -> dict[str, nn.Parameter]:
    params = {"lora_A": layer.lora_A, "lora_B": layer.lora_B}
    if layer.base_layer.bias is not None and layer.base_layer.bias.requires_grad:
        params["base_layer.bias"] = layer.base_layer.bias
    return params


def soma_state_dict(model: nn.Module) -> dict[str, Any]:
    """Adapters and trained biases only, with a fingerprint of the frozen base weights.

    Returns:
        ``{"format_version", "config", "adapters": {name: tensor}, "fingerprint": {layer: tensor}}``.
    """
    layers = soma_layers(model)
    if not layers:
        raise ValueError("the model has no SoMA layers; apply_soma() it first.")
    adapters = {f"{name}.{key}": p.detach().cpu().clone()
                for name, layer in layers.items() for key, p in _trained_params(layer).items()}
    config = getattr(model, "soma_config", None)
    return {
        "format_version": STATE_FORMAT_VERSION,
        "config": config.to_dict() if config is not None else None,
        "adapters": adapters,
        "fingerprint": {name: _fingerprint(layer) for name, layer in layers.items()},
    }


@torch.no_grad()
def load_soma_state_dict(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Load adapters saved by :func:`soma_state_dict` into a model with the same SoMA layers.

    Raises:
        ValueError: layers missing or of another shape/rank, or the adapters were trained on other base
            weights (fingerprint mismatch).
    """
    layers = soma_layers(model)
    saved_layers = set(state.get("fingerprint", {}))
    if saved_layers != set(layers):
        missing, extra = sorted(saved_layers - set(layers)), sorted(set(layers) - saved_layers)
        raise ValueError(f"adapter file and model have different SoMA layers: only in the file {missing[:5]}, "
                         f"only in the model {extra[:5]}; apply SoMA with the config stored in the file.")
    for name, layer in layers.items():
        expected = _fingerprint(layer)
        saved = state["fingerprint"][name].to(torch.float64)
        if not torch.allclose(saved, expected, rtol=_FINGERPRINT_RTOL, atol=1e-12 * float(expected[0].abs())):
            raise ValueError(f"adapter was trained on different base weights (layer '{name}' fingerprint "
                             "differs); load the base checkpoint it was trained from before the adapter.")
        for key, param in _trained_params(layer).items():
            value = state["adapters"].get(f"{name}.{key}")
            if value is None:
                raise ValueError(f"adapter file lacks '{name}.{key}'.")
            if value.shape != param.shape:
                raise ValueError(f"adapter '{name}.{key}' has shape {tuple(value.shape)} but the model expects "
                                 f"{tuple(param.shape)} (another rank or layer size?).")
    for name, layer in layers.items():
        was_merged = layer.merged
        layer.unmerge()
        for key, param in _trained_params(layer).items():
            param.copy_(state["adapters"][f"{name}.{key}"].to(param.dtype))
        if was_merged:
            layer.merge()
    return model


@dataclass
class TrainableSummary:
    """Parameter counts of a (partly) adapted model."""

    adapter: int
    bias: int
    other_trainable: int
    total: int
    adapted_layers: int

    @property
    def trainable(self) -> int:
        return self.adapter + self.bias + self.other_trainable

    def __str__(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        return (f"trainable {self.trainable:,} / {self.total:,} ({share:.2f}%): adapters {self.adapter:,}, "
                f"biases {self.bias:,}, other {self.other_trainable:,} in {self.adapted_layers} adapted layers")


def trainable_parameters(model: nn.Module) -> TrainableSummary:
    """Count trainable parameters by kind (adapters, adapted-layer biases, anything else)."""
    layers = soma_layers(model).values()
    adapter_ids = {id(p) for layer in layers for p in (layer.lora_A, layer.lora_B) if p.requires_grad}
    bias_ids = {id(layer.base_layer.bias) for layer in layers
                if layer.base_layer.bias is not None and layer.base_layer.bias.requires_grad}
    counts = {"adapter": 0, "bias": 0, "other_trainable": 0}
    total = 0
    for p in model.parameters():
        total += p.numel()
        if not p.requires_grad:
            continue
        kind = "adapter" if id(p) in adapter_ids else "bias" if id(p) in bias_ids else "other_trainable"
        counts[kind] += p.numel()
    return TrainableSummary(total=total, adapted_layers=len(layers), **counts)
