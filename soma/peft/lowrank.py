"""What the low-rank adapter methods share (SoMA with its PiSSA and LoRA initialisations, DoRA): the config of which
linear layers are adapted (:class:`LowRankConfig`), the adapted layer (:class:`LowRankLinear`: ``lora_A``/``lora_B``,
fused q/k/v slices, merging, the adapter branch of the forward) and the injection into a model
(:func:`inject_low_rank_layers`), as LoRA's config/layer/model are the base of peft's LoRA-like tuners.

Modelled on peft's ``LoraConfig``: a typed dataclass validated in ``__post_init__``, with per-layer choices (block
range, ``rank_pattern``) expressed as data rather than code. Knows no method: each method's module subclasses these.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import AdapterLayer
from .model import CONFIG_ATTR, check_not_adapted, mark_only_adapters_trainable, set_submodule
from .registry import MethodConfig, is_int

__all__ = ["LowRankConfig", "LowRankLinear", "check_rank", "inject_low_rank_layers"]


def _check_regex(name: str, pattern: Any) -> re.Pattern:
    if not isinstance(pattern, str):
        raise ValueError(f"`{name}` must be a regex string, got {pattern!r}.")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"`{name}` is not a valid regex ({error}), got {pattern!r}.") from None


def _name_matches(module_name: str, key: str) -> bool:
    """Exact name or dotted suffix: ``"attn.qkv"`` matches ``"blocks.3.attn.qkv"`` but not ``"blocks.3.xattn.qkv"``."""
    return module_name == key or module_name.endswith("." + key)


@dataclass
class LowRankConfig(MethodConfig):
    """Which linear layers a low-rank adapter method adapts (shared by SoMA, LoRA/PiSSA and DoRA).

    Args:
        r: rank of each adapter (per q/k/v slice for fused layers). Default: 16.
        alpha: scaling numerator, ``scale = alpha / r``. ``None`` means ``alpha = r`` (scale 1).
        target_modules: a tuple of module names, each matched exactly or as a dotted suffix (``"attn.qkv"``
            matches ``"blocks.3.attn.qkv"``); a single string is one regex matched with ``re.fullmatch``
            against the full module name. The default names the attention and MLP linears of a timm/DINOv2-style
            block; bare suffixes such as ``"proj"`` would also match ``patch_embed.proj`` (a Conv2d) outside the
            blocks.
        fused_splits: targets whose name ends with a key (exactly or as a dotted suffix) are adapted as
            that many equal output slices (fused q/k/v), each with its own rank-r adapter, exactly as if they
            were separate layers. Default: ``{"qkv": 3}``.
        start_block: only modules whose name holds a block index ``>= start_block`` are adapted; earlier
            blocks stay frozen without adapters.
        end_block: if set, only blocks ``< end_block`` are adapted.
        block_pattern: regex whose group 1 is the block index in a module name. Modules whose name has no
            block index (e.g. a head, or an ``nn.Sequential`` with ``target_modules=("0", "2")``) are adapted
            regardless of ``start_block``/``end_block``.
        rank_pattern: regex (``re.search`` on the module name) → rank override; the first matching entry
            wins (as in peft). Rank 0 disables the adaptation of that module.
        train_bias: the biases of adapted layers are trained too.
    """

    method_name: ClassVar[str] = "low-rank"  # names the method in error messages

    r: int = 16
    alpha: float | None = None
    target_modules: tuple[str, ...] | str = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    fused_splits: dict[str, int] = field(default_factory=lambda: {"qkv": 3})
    start_block: int = 0
    end_block: int | None = None
    block_pattern: str = r"(?:^|\.)blocks\.(\d+)\."
    rank_pattern: dict[str, int] = field(default_factory=dict)
    train_bias: bool = True

    def __post_init__(self) -> None:
        if not is_int(self.r) or self.r <= 0:
            raise ValueError(f"`r` must be a positive int, got {self.r!r}.")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not self.alpha > 0):
            raise ValueError(f"`alpha` must be a positive number or None (meaning alpha = r), got {self.alpha!r}.")
        self._check_targets()
        if not isinstance(self.fused_splits, dict):
            raise ValueError(f"`fused_splits` must be a dict of name suffix -> slice count, got {self.fused_splits!r}.")
        self.fused_splits = dict(self.fused_splits)  # a private copy: callers' dicts are not aliased
        for key, splits in self.fused_splits.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"`fused_splits` keys must be non-empty module names, got {key!r}.")
            if not is_int(splits) or splits < 1:
                raise ValueError(f"`fused_splits[{key!r}]` must be a positive int, got {splits!r}.")
        if not is_int(self.start_block) or self.start_block < 0:
            raise ValueError(f"`start_block` must be an int >= 0, got {self.start_block!r}.")
        if self.end_block is not None and (not is_int(self.end_block) or self.end_block <= self.start_block):
            raise ValueError(f"`end_block` must be None or an int > `start_block` ({self.start_block}), "
                             f"got {self.end_block!r}.")
        if _check_regex("block_pattern", self.block_pattern).groups < 1:
            raise ValueError("`block_pattern` needs a capturing group for the block index, "
                             f"got {self.block_pattern!r}.")
        if not isinstance(self.rank_pattern, dict):
            raise ValueError(f"`rank_pattern` must be a dict of regex -> rank, got {self.rank_pattern!r}.")
        self.rank_pattern = dict(self.rank_pattern)
        for pattern, rank in self.rank_pattern.items():
            _check_regex(f"rank_pattern[{pattern!r}]", pattern)
            if not is_int(rank) or rank < 0:
                raise ValueError(f"`rank_pattern[{pattern!r}]` must be an int >= 0 (0 disables), got {rank!r}.")
        if not isinstance(self.train_bias, bool):
            raise ValueError(f"`train_bias` must be a bool, got {self.train_bias!r}.")

    def _check_targets(self) -> None:
        if isinstance(self.target_modules, str):
            _check_regex("target_modules", self.target_modules)
            return
        if isinstance(self.target_modules, list):  # from JSON/YAML or to_dict()
            self.target_modules = tuple(self.target_modules)
        if (not isinstance(self.target_modules, tuple) or not self.target_modules
                or not all(isinstance(t, str) and t for t in self.target_modules)):
            raise ValueError("`target_modules` must be a non-empty tuple of module names or one regex string, "
                             f"got {self.target_modules!r}.")

    @property
    def scale(self) -> float:
        """``alpha / r`` for the default rank ``r``."""
        return (self.alpha if self.alpha is not None else self.r) / self.r

    # ------------------------------------------------------------------ per-module rules
    def block_index(self, module_name: str) -> int | None:
        """The block index in ``module_name`` according to ``block_pattern``, or ``None``."""
        match = re.search(self.block_pattern, module_name)
        return int(match.group(1)) if match else None

    def is_named_target(self, module_name: str) -> bool:
        """Whether ``target_modules`` names ``module_name`` (ignoring the block range)."""
        if isinstance(self.target_modules, str):
            return re.fullmatch(self.target_modules, module_name) is not None
        return any(_name_matches(module_name, target) for target in self.target_modules)

    def in_block_range(self, module_name: str) -> bool:
        """Whether ``module_name`` lies in ``[start_block, end_block)``; names without a block index do."""
        index = self.block_index(module_name)
        if index is None:
            return True
        return index >= self.start_block and (self.end_block is None or index < self.end_block)

    def is_target(self, module_name: str) -> bool:
        """Whether ``module_name`` is named by ``target_modules`` and lies in the block range."""
        return bool(module_name) and self.is_named_target(module_name) and self.in_block_range(module_name)

    def rank_for(self, module_name: str) -> int:
        """Rank of ``module_name``: the first matching ``rank_pattern`` entry, else ``r``."""
        for pattern, rank in self.rank_pattern.items():
            if re.search(pattern, module_name):
                return rank
        return self.r

    def splits_for(self, module_name: str) -> int:
        """Number of fused output slices of ``module_name`` (1 if it is not a fused layer)."""
        for key, splits in self.fused_splits.items():
            if _name_matches(module_name, key):
                return splits
        return 1



def check_rank(r: int, out_features: int, in_features: int, splits: int = 1) -> None:
    """Raise ``ValueError`` unless a ``Linear(in_features, out_features)`` can hold a rank-r adapter.

    Each of the ``splits`` output slices needs ``0 < r < min(out_features / splits, in_features)``: at the full
    rank the residual would be empty and "minor" and "principal" would be the same thing.
    """
    shape = f"Linear(in_features={in_features}, out_features={out_features})"
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1 or out_features % splits:
        raise ValueError(f"`splits` must be a positive int dividing out_features={out_features} of {shape}, "
                         f"got {splits!r}.")
    limit = min(out_features // splits, in_features)
    if isinstance(r, bool) or not isinstance(r, int) or not 0 < r < limit:
        raise ValueError(f"`r` must satisfy 0 < r < min(out/splits, in) = {limit} for {shape} with "
                         f"splits={splits}, got {r!r}.")


class LowRankLinear(AdapterLayer):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scale · B A`` (the part LoRA, SoMA and DoRA share).

    Args:
        base_layer: the pretrained layer (wrapped, not copied; its weight is frozen).
        r: adapter rank (per output slice when ``splits > 1``).
        alpha: scaling numerator, ``scale = alpha / r``. Default: ``None`` (``alpha = r``).
        splits: number of equal output slices with their own adapter (3 for a fused q/k/v projection). The
            adapter is block-diagonal: rows ``i*r:(i+1)*r`` of ``lora_A`` pair with the rows of ``lora_B``
            that belong to slice i, exactly as if the slices were separate layers.
        train_bias: the base layer's bias is trainable.

    ``lora_A`` starts Kaiming-uniform and ``lora_B`` at zero (peft's LoRA initialisation): the function is
    unchanged until the adapter trains or a subclass initialises it otherwise.

    Raises:
        TypeError: ``base_layer`` is not an ``nn.Linear``.
        ValueError: ``base_layer`` is already adapted, or ``r``/``splits``/``alpha`` are invalid.
    """

    adapter_tensor_names = ("lora_A", "lora_B")

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, splits: int = 1,
                 train_bias: bool = True) -> None:
        super().__init__()
        if isinstance(base_layer, AdapterLayer):
            raise ValueError(f"this layer is already adapted ({type(base_layer).__name__}); call "
                             "unload_adapters() before adapting it again.")
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{self.method_name} adapts nn.Linear layers only, got {type(base_layer).__name__}.")
        out_features, in_features = base_layer.weight.shape
        check_rank(r, out_features, in_features, splits)
        if alpha is not None and not alpha > 0:
            raise ValueError(f"`alpha` must be positive or None (meaning alpha = r), got {alpha!r}.")
        self.base_layer = base_layer
        self._r, self._splits, self._merged = r, splits, False
        self._scale = float(alpha if alpha is not None else r) / r
        self.train_bias = train_bias
        factory = dict(device=base_layer.weight.device, dtype=base_layer.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(splits * r, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft's LoRA; B = 0 keeps the function
        base_layer.weight.requires_grad_(False)
        if base_layer.bias is not None:
            base_layer.bias.requires_grad_(train_bias)

    # ------------------------------------------------------------------ read-only facts
    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def r(self) -> int:
        """Rank per output slice."""
        return self._r

    @property
    def splits(self) -> int:
        """Number of output slices with their own adapter (3 for fused q/k/v)."""
        return self._splits

    @property
    def scale(self) -> float:
        """``alpha / r``."""
        return self._scale

    @property
    def merged(self) -> bool:
        """Whether ``scale·BA`` is currently folded into the base weight."""
        return self._merged

    # ------------------------------------------------------------------ weights
    @property
    def adapted_matrices(self) -> int:
        return self.splits

    def low_rank_weight(self) -> torch.Tensor:
        """``scale · B A`` as an (out × in) matrix, block-diagonal over the output slices."""
        b = self.lora_B.view(self.splits, self.out_features // self.splits, self.r)
        a = self.lora_A.view(self.splits, self.r, self.in_features)
        return (torch.bmm(b, a) * self.scale).reshape(self.out_features, self.in_features)

    def delta_weight(self) -> torch.Tensor:
        """The change to the base weight: ``scale · B A`` (see :meth:`low_rank_weight`)."""
        return self.low_rank_weight()

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """``lora_A``, ``lora_B`` and, with ``train_bias``, the base bias (chosen by structure, not by name)."""
        tensors = {name: self.get_parameter(name) for name in self.adapter_tensor_names}
        if self.train_bias and self.base_layer.bias is not None:
            tensors[f"{self.base_layer_name}.bias"] = self.base_layer.bias
        return tensors

    def layer_info(self) -> dict:
        return {"out_features": self.out_features, "in_features": self.in_features, "r": self.r,
                "splits": self.splits, "scale": self.scale, "train_bias": self.train_bias}


    @torch.no_grad()
    def merge(self, safe_merge: bool = False) -> None:
        """Fold :meth:`delta_weight` into the base weight (no adapter cost at inference). Idempotent.

        Args:
            safe_merge: check the merged weight for NaN/Inf before writing it (peft's ``safe_merge``).
        """
        if not self.merged:
            self._add_delta(+1.0, safe_merge)
            self._merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`. Idempotent."""
        if self.merged:
            self._add_delta(-1.0, False)
            self._merged = False

    def _add_delta(self, sign: float, check: bool) -> None:
        weight = self.base_layer.weight
        # At least float32 for the sum, so that bf16/fp16 weights are rounded once, not twice.
        work = torch.promote_types(weight.dtype, torch.float32)
        updated = weight.to(work) + sign * self.delta_weight().to(work)
        if check and not torch.isfinite(updated).all():
            raise ValueError(f"merging the adapter of {self.base_layer} gives NaN/Inf weights; not merged.")
        weight.copy_(updated)

    # ------------------------------------------------------------------ forward
    def low_rank_update(self, x: torch.Tensor) -> torch.Tensor:
        """``scale · x Aᵀ Bᵀ`` (block-diagonal over the slices) in ``x``'s dtype, without forming ``B A``."""
        # The adapter runs in the input dtype (under autocast F.linear casts further, as for the base layer).
        hidden = F.linear(x, self.lora_A.to(x.dtype))  # (..., splits*r)
        b = self.lora_B.to(x.dtype)
        if self.splits == 1:
            update = F.linear(hidden, b)
        else:  # block-diagonal: slice i of the output only sees rows i*r:(i+1)*r of the hidden code
            hidden = hidden.unflatten(-1, (self.splits, self.r))
            b = b.view(self.splits, self.out_features // self.splits, self.r)
            update = torch.einsum("...sr,sor->...so", hidden, b).flatten(-2)
        return update * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        return out + self.low_rank_update(x).to(out.dtype)

    def extra_repr(self) -> str:
        return (f"r={self.r}, scale={self.scale:g}, splits={self.splits}, train_bias={self.train_bias}, "
                f"merged={self.merged}")



def _no_match_error(model: nn.Module, config: LowRankConfig) -> ValueError:
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



def inject_low_rank_layers(model: nn.Module, config: LowRankConfig,
                           make_layer: Callable[[nn.Linear, int, int], AdapterLayer]) -> nn.Module:
    """Wrap the ``nn.Linear`` layers that ``config`` targets by ``make_layer(linear, rank, splits)``, in place.

        Every parameter of ``model`` is frozen; then each adapter layer's trained tensors are made trainable. All
    checks run before the model is touched, and the config is recorded as ``model.adapter_config``.

    Raises:
        ValueError: adapters are already applied, no module matches, every match has rank 0, or ``make_layer``
            refuses a rank (the message names the layer).
        TypeError: a matched module is not an ``nn.Linear``.
    """
    check_not_adapted(model)
    matched = [(name, module) for name, module in model.named_modules() if config.is_target(name)]
    if not matched:
        raise _no_match_error(model, config)
    plan = []
    for name, module in matched:
        rank = config.rank_for(name)
        if rank == 0:  # disabled by rank_pattern
            continue
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target module '{name}' is a {type(module).__name__}; {config.method_name} adapts "
                            "nn.Linear only. Make `target_modules` more specific (e.g. 'attn.proj' instead of "
                            "'proj').")
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
        set_submodule(model, name, make_layer(module, rank, splits))
    mark_only_adapters_trainable(model)
    setattr(model, CONFIG_ATTR, config)
    return model
