"""Injecting SoMA into any ``nn.Module``: selection, freezing, merging, unloading (arXiv:2412.04077).

Follows peft's ``inject_adapter`` / ``_mark_only_adapters_as_trainable`` / ``merge_and_unload``: targets are
found by module name (exact, dotted suffix or one regex), wrapped by composition, and the trainable parameters
are chosen by visiting the adapter layers rather than by matching parameter names.
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch
import torch.nn as nn

from .config import SoMAConfig
from .layer import SoMALinear, check_rank, default_linear_weight

# The attribute under which apply_soma() records its config on the model (read by soma_state_dict()).
CONFIG_ATTR = "soma_config"


def soma_layers(model: nn.Module) -> dict[str, SoMALinear]:
    """All :class:`SoMALinear` layers of ``model``, by module name (in module order)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, SoMALinear)}


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _no_match_error(model: nn.Module, config: SoMAConfig) -> ValueError:
    names = [n for n, _ in model.named_modules() if n]
    named = [n for n in names if config.is_named_target(n)]
    linears = [n for n, m in model.named_modules() if n and isinstance(m, nn.Linear)]
    if named:  # the names exist, but the block range excludes all of them
        return ValueError(f"`target_modules`={config.target_modules!r} matches {len(named)} module(s) (e.g. "
                          f"{named[:3]}), but none in blocks [{config.start_block}, {config.end_block}) by "
                          f"`block_pattern`={config.block_pattern!r}; check `start_block`/`end_block`.")
    return ValueError(f"no module matches `target_modules`={config.target_modules!r}; modules of this model "
                      f"include {(linears or names)[:8]} (names match exactly, as a dotted suffix, or by one "
                      "regex string).")


def apply_soma(model: nn.Module, config: SoMAConfig | dict, initialize: bool = True) -> nn.Module:
    """Wrap the targeted ``nn.Linear`` layers of ``model`` in :class:`SoMALinear`, in place.

    Every parameter of ``model`` is frozen; then each SoMA layer's ``lora_A``, ``lora_B`` and (with
    ``train_bias``) its base bias are made trainable. All checks run before the model is touched.

    Args:
        model: any module (a timm ViT, a diffusers UNet, an ``nn.Sequential``) with its pretrained weights
            already loaded: the SVD split is taken from the current weights.
        config: a :class:`SoMAConfig` or a dict of its fields.
        initialize: take the SVD split now. ``False`` wraps the layers with ``B = 0`` (output unchanged) for
            models whose weights are loaded afterwards; call :func:`initialize_soma` once they are in place.

    Returns:
        ``model`` itself, with the config recorded as ``model.soma_config``.

    Raises:
        ValueError: SoMA is already applied, no module matches, every match has rank 0, or a rank does not fit
            a layer.
        TypeError: a matched module is not an ``nn.Linear``.
    """
    if isinstance(config, dict):
        config = SoMAConfig.from_dict(config)
    elif not isinstance(config, SoMAConfig):
        raise TypeError(f"`config` must be a SoMAConfig or a dict, got {type(config).__name__}.")
    if soma_layers(model):
        raise ValueError("SoMA is already applied to this model (it contains SoMALinear layers); call "
                         "unload_soma(model) first to apply it again.")
    matched = [(name, module) for name, module in model.named_modules() if config.is_target(name)]
    if not matched:
        raise _no_match_error(model, config)
    plan = []
    for name, module in matched:
        rank = config.rank_for(name)
        if rank == 0:  # disabled by rank_pattern
            continue
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target module '{name}' is a {type(module).__name__}; SoMA adapts nn.Linear only. "
                            "Make `target_modules` more specific (e.g. 'attn.proj' instead of 'proj').")
        splits = config.splits_for(name)
        try:
            check_rank(rank, module.out_features, module.in_features, splits)
        except ValueError as error:
            raise ValueError(f"layer '{name}': {error}") from None
        plan.append((name, module, rank, splits))
    if not plan:
        raise ValueError(f"every module matched by `target_modules`={config.target_modules!r} has rank 0 in "
                         f"`rank_pattern`={config.rank_pattern!r}; nothing to adapt.")
    model.requires_grad_(False)
    for name, module, rank, splits in plan:
        layer = SoMALinear(module, rank, alpha=config.alpha, init=config.init, splits=splits,
                           train_bias=config.train_bias, svd_method=config.svd_method, initialize=initialize)
        _set_submodule(model, name, layer)
    _mark_trainable(model)
    setattr(model, CONFIG_ATTR, config)
    return model


def _mark_trainable(model: nn.Module) -> None:
    """Trainable = adapters and chosen biases, found by visiting the SoMA layers (never by parameter names)."""
    for layer in soma_layers(model).values():
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)
        layer.base_layer.weight.requires_grad_(False)
        if layer.base_layer.bias is not None:
            layer.base_layer.bias.requires_grad_(layer.train_bias)


def initialize_soma(model: nn.Module) -> nn.Module:
    """Take the SVD split of every SoMA layer from its current weights (after loading pretrained weights).

    With ``init="released"`` the adapters instead get the minor part of the weights the model's constructor
    would have drawn under ``torch.manual_seed(config.init_seed)``, as in the official SoMA code, which takes the
    SVD at construction and loads the pretrained weights afterwards. The draws are replayed from a private
    generator seeded with ``init_seed``: every ``nn.Linear`` and ``nn.Conv*`` of ``model``, adapted or not, in
    module order, draws its default initialisation (weight, then bias), and a fused layer (``fused_splits``)
    draws each output slice as a separate ``nn.Linear``. For a model built only of such layers in module order,
    like DINOv2 (the official code builds patch embedding, then q, k, v, proj, fc1, fc2 of each block), this is
    the exact stream of the official model's construction; other randomly initialised modules are not replayed.
    """
    layers = soma_layers(model)
    config = getattr(model, CONFIG_ATTR, None)
    if any(layer.init == "released" for layer in layers.values()):
        seed = config.init_seed if config is not None else SoMAConfig.init_seed
        _replay_construction(model, config, torch.Generator().manual_seed(seed))
    for layer in layers.values():
        if layer.init != "released":
            layer.initialize()
    return model


def _replay_construction(model: nn.Module, config: SoMAConfig | None, generator: torch.Generator) -> None:
    """Draw every default initialisation of ``model`` in module order; SoMA layers keep the minor part of theirs."""
    inside_soma = set()
    for name, module in model.named_modules():
        if name in inside_soma:
            continue
        if isinstance(module, SoMALinear):
            inside_soma.add(f"{name}.base_layer" if name else "base_layer")
            if module.init == "released":
                module.initialize(generator)
            else:  # another mode: its own split, but its construction draws are part of the stream all the same
                for _ in range(module.splits):
                    default_linear_weight(module.out_features // module.splits, module.in_features,
                                          module.base_layer.bias is not None, generator)
        elif isinstance(module, nn.Linear):
            splits = config.splits_for(name) if config is not None else 1
            for _ in range(splits):
                default_linear_weight(module.out_features // splits, module.in_features, module.bias is not None,
                                      generator)
        elif isinstance(module, nn.modules.conv._ConvNd):
            # nn.Conv*.reset_parameters: Kaiming-uniform (a=√5) weight, then U(±1/√fan_in) bias.
            weight = torch.empty(module.weight.shape)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                bound = 1 / math.sqrt(weight[0].numel())
                torch.empty(module.bias.shape).uniform_(-bound, bound, generator=generator)


def merge_soma(model: nn.Module, safe_merge: bool = False) -> nn.Module:
    """Fold every adapter into its base weight (idempotent); see :meth:`SoMALinear.merge`."""
    for layer in soma_layers(model).values():
        layer.merge(safe_merge=safe_merge)
    return model


def unmerge_soma(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_soma` (idempotent)."""
    for layer in soma_layers(model).values():
        layer.unmerge()
    return model


@torch.no_grad()
def unload_soma(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every :class:`SoMALinear` by its plain ``nn.Linear``, in place (peft's ``merge_and_unload``).

    Args:
        model: a model with SoMA applied.
        merge: ``True`` keeps the adapted function (weight ``W_res + scale·BA``). ``False`` drops the
            adapters and keeps only the residual ``W_res``, which for ``init="minor"``/``"principal"`` is *not*
            the pretrained weight (it lacks the rank-r part); for ``init="lora"`` it is.

    Returns:
        ``model``, with no SoMA layers left and ``model.soma_config`` removed. ``requires_grad`` flags of the
        kept weights and biases are left as they were.
    """
    for name, layer in soma_layers(model).items():
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        _set_submodule(model, name, layer.base_layer)
    if hasattr(model, CONFIG_ATTR):
        delattr(model, CONFIG_ATTR)
    return model


@dataclass
class TrainableSummary:
    """Parameter counts of a model with SoMA applied.

    Attributes:
        adapter: ``lora_A`` + ``lora_B`` values (trainable ones).
        bias: trainable biases of adapted layers.
        other_trainable: any other trainable parameter (e.g. a head the caller left trainable).
        trainable: the sum of the three.
        total: all parameters of the model (shared parameters counted once).
        adapted_layers: number of adapted weight matrices: a fused q/k/v layer counts as its 3 slices, so a
            fused and an unfused attention count alike (DINOv2-L, blocks 8-23: 16 × (3 + 3) = 96).
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
    """Count trainable parameters by kind: adapters, biases of adapted layers, anything else.

    Works on meta-device models (only shapes are read).
    """
    layers = list(soma_layers(model).values())
    adapter_ids = {id(p) for layer in layers for p in (layer.lora_A, layer.lora_B)}
    bias_ids = {id(layer.base_layer.bias) for layer in layers if layer.base_layer.bias is not None}
    counts = {"adapter": 0, "bias": 0, "other_trainable": 0}
    total = 0
    for param in model.parameters():  # yields shared parameters once
        total += param.numel()
        if param.requires_grad:
            kind = "adapter" if id(param) in adapter_ids else "bias" if id(param) in bias_ids else "other_trainable"
            counts[kind] += param.numel()
    return TrainableSummary(trainable=sum(counts.values()), total=total,
                            adapted_layers=sum(layer.splits for layer in layers), **counts)
