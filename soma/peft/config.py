"""Configuration of the low-rank adapter methods: which linear layers are adapted, and how (SoMA: arXiv:2412.04077, §3).

:class:`LowRankConfig` holds the choice of layers, ranks and blocks that SoMA, LoRA/PiSSA and DoRA share;
:class:`SoMAConfig` adds SoMA's initialisation options.

Modelled on peft's ``LoraConfig``: a typed dataclass validated in ``__post_init__``, with per-layer choices
(block range, ``rank_pattern``) expressed as data rather than code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .registry import MethodConfig

INIT_MODES = ("minor", "principal", "lora", "released")
SVD_METHODS = ("auto", "gram", "svd")


def _is_int(value: Any) -> bool:
    # bool is an int subclass; `r=True` is a typo, not a rank.
    return isinstance(value, int) and not isinstance(value, bool)


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
        if not _is_int(self.r) or self.r <= 0:
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
            if not _is_int(splits) or splits < 1:
                raise ValueError(f"`fused_splits[{key!r}]` must be a positive int, got {splits!r}.")
        if not _is_int(self.start_block) or self.start_block < 0:
            raise ValueError(f"`start_block` must be an int >= 0, got {self.start_block!r}.")
        if self.end_block is not None and (not _is_int(self.end_block) or self.end_block <= self.start_block):
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
            if not _is_int(rank) or rank < 0:
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


@dataclass
class SoMAConfig(LowRankConfig):
    """Which linear layers SoMA adapts (the :class:`LowRankConfig` fields), and how.

    Args:
        init: ``"minor"`` adapts the r smallest singular components (SoMA), ``"principal"`` the r largest
            (PiSSA), ``"lora"`` is plain LoRA (Kaiming-uniform A, zero B, base weight untouched).
            ``"released"`` reproduces what the official SoMA code (github ysj9909/SoMA) trains: the adapters
            hold the r smallest singular triplets of a *random* ``nn.Linear`` default initialisation (float32
            SVD), the base weight keeps the pretrained W, so training starts at ``W + scale·B₀A₀``
            (see :func:`soma.peft.initialize_soma` for how the random weights are drawn).
        svd_method: ``"svd"`` (float64 ``torch.linalg.svd``), ``"gram"`` (float64 Gram matrix + symmetric
            eigensolver) or ``"auto"`` (the one measured faster on the layer's device type).
        svd_device: where each matrix is decomposed: default (``None``) the weights' device; ``"cuda"`` streams
            CPU weights through the GPU one matrix at a time (only that matrix's float64 copy and its workspace
            on the GPU).
        init_seed: seed of the random weights of ``init="released"`` (the official configs' runtime seed is 42);
            unused by the other modes.

    Fused layers (``fused_splits``) are decomposed slice by slice, each with its own SVD.
    """

    method_name: ClassVar[str] = "SoMA"

    init: Literal["minor", "principal", "lora", "released"] = "minor"
    svd_method: Literal["auto", "gram", "svd"] = "auto"
    svd_device: str | None = None
    init_seed: int = 42

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in INIT_MODES:
            raise ValueError(f"`init` must be one of {INIT_MODES}, got {self.init!r}.")
        if self.svd_method not in SVD_METHODS:
            raise ValueError(f"`svd_method` must be one of {SVD_METHODS}, got {self.svd_method!r}.")
        if self.svd_device is not None and (not isinstance(self.svd_device, str)
                                            or self.svd_device.split(":")[0] not in ("cpu", "cuda")):
            raise ValueError(f"`svd_device` must be None, 'cpu' or 'cuda[:N]', got {self.svd_device!r}.")
        if not _is_int(self.init_seed) or self.init_seed < 0:
            raise ValueError(f"`init_seed` must be an int >= 0, got {self.init_seed!r}.")
