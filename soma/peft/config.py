"""Configuration of SoMA adaptation (arXiv:2412.04077, §3)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

INIT_MODES = ("minor", "principal", "lora")
SVD_METHODS = ("auto", "gram", "svd")


@dataclass
class SoMAConfig:
    """Which linear layers SoMA adapts, and how.

    Args:
        r: rank of each adapter (per q/k/v slice for fused layers).
        alpha: scaling numerator; ``scale = alpha / r``. ``None`` means ``alpha = r`` (scale 1).
        init: ``"minor"`` adapts the r smallest singular components (SoMA), ``"principal"`` the r largest
            (PiSSA), ``"lora"`` is plain LoRA (Kaiming A, zero B, base weight untouched).
        target_modules: module names matched exactly or as a dotted suffix (``"attn.qkv"`` matches
            ``"blocks.3.attn.qkv"``); a single string is a regex matched against the full name.
        fused_splits: targets whose name ends with a key are decomposed as that many equal output slices
            (fused q/k/v), each with its own SVD and adapter, exactly as if they were separate layers.
        start_block: only modules with a block index ``>= start_block`` are adapted (earlier blocks stay
            frozen). Modules whose name has no block index are adapted regardless of the range.
        end_block: if set, only blocks ``< end_block`` are adapted.
        block_pattern: regex whose group 1 is the block index in a module name.
        rank_pattern: regex (searched in the module name) → rank override; rank 0 disables that module.
        train_bias: biases of adapted layers are trained too.
        svd_method: ``"gram"`` (float64 Gram matrix + eigh), ``"svd"`` (float64 ``torch.linalg.svd``) or
            ``"auto"`` (the one measured faster on the layer's device).
    """

    r: int = 16
    alpha: float | None = None
    init: Literal["minor", "principal", "lora"] = "minor"
    target_modules: tuple[str, ...] | str = ("qkv", "proj", "fc1", "fc2")
    fused_splits: dict[str, int] = field(default_factory=lambda: {"qkv": 3})
    start_block: int = 0
    end_block: int | None = None
    block_pattern: str = r"(?:^|\.)blocks\.(\d+)\."
    rank_pattern: dict[str, int] = field(default_factory=dict)
    train_bias: bool = True
    svd_method: Literal["auto", "gram", "svd"] = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"`r` must be a positive int, got {self.r!r}.")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"`alpha` must be positive or None (= r), got {self.alpha!r}.")
        if self.init not in INIT_MODES:
            raise ValueError(f"`init` must be one of {INIT_MODES}, got {self.init!r}.")
        if self.svd_method not in SVD_METHODS:
            raise ValueError(f"`svd_method` must be one of {SVD_METHODS}, got {self.svd_method!r}.")
        if isinstance(self.target_modules, list):
            self.target_modules = tuple(self.target_modules)
        if not self.target_modules:
            raise ValueError("`target_modules` must name at least one module.")
        if self.start_block < 0:
            raise ValueError(f"`start_block` must be >= 0, got {self.start_block}.")
        if self.end_block is not None and self.end_block <= self.start_block:
            raise ValueError(f"`end_block` must be > `start_block` ({self.start_block}), got {self.end_block}.")
        for key, splits in self.fused_splits.items():
            if not isinstance(splits, int) or splits < 1:
                raise ValueError(f"`fused_splits[{key!r}]` must be a positive int, got {splits!r}.")
        for pattern, rank in self.rank_pattern.items():
            if not isinstance(rank, int) or rank < 0:
                raise ValueError(f"`rank_pattern[{pattern!r}]` must be an int >= 0, got {rank!r}.")
        re.compile(self.block_pattern)

    @property
    def scale(self) -> float:
        """``alpha / r`` for the default rank."""
        return (self.alpha if self.alpha is not None else self.r) / self.r

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for checkpoints and logs)."""
        data = asdict(self)
        if isinstance(data["target_modules"], tuple):
            data["target_modules"] = list(data["target_modules"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SoMAConfig":
        """Build from a dict (config files, checkpoints); unknown keys raise ``ValueError``."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown SoMA option(s) {unknown}; valid options are {sorted(valid)}.")
        return cls(**data)

    def block_index(self, module_name: str) -> int | None:
        """Block index in ``module_name`` according to ``block_pattern``, or ``None``."""
        match = re.search(self.block_pattern, module_name)
        return int(match.group(1)) if match else None

    def is_target(self, module_name: str) -> bool:
        """Whether ``module_name`` is named by ``target_modules`` and lies in the block range."""
        if isinstance(self.target_modules, str):
            named = re.fullmatch(self.target_modules, module_name) is not None
        else:
            named = any(module_name == t or module_name.endswith("." + t) for t in self.target_modules)
        if not named:
            return False
        index = self.block_index(module_name)
        if index is None:
            return True
        return index >= self.start_block and (self.end_block is None or index < self.end_block)

    def rank_for(self, module_name: str) -> int:
        """Rank of ``module_name``: the last matching ``rank_pattern`` entry, else ``r``."""
        rank = self.r
        for pattern, value in self.rank_pattern.items():
            if re.search(pattern, module_name):
                rank = value
        return rank

    def splits_for(self, module_name: str) -> int:
        """Number of fused output slices of ``module_name`` (1 if not fused)."""
        for suffix, splits in self.fused_splits.items():
            if module_name == suffix or module_name.endswith("." + suffix):
                return splits
        return 1
