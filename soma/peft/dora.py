"""DoRA (Weight-Decomposed Low-Rank Adaptation, Liu et al., ICML 2024, arXiv:2402.09353), in pure PyTorch.

The adapted weight is split into a trainable per-output-feature magnitude ``m`` and a direction that LoRA
updates:

    W' = m / ‖W + s·B A‖ · (W + s·B A),      y = x W'ᵀ + b

where ``‖·‖`` is the norm of each output row (over the input dimension). As in the paper (§4.3) and HF peft, the
norm is detached from the gradient. Initialisation as HF peft's ``LoraConfig(use_dora=True)``: Kaiming-uniform
A, zero B, ``m = ‖W‖`` (so the output is unchanged); fused q/k/v layers get one block-diagonal low-rank part per
slice (``fused_splits``), exactly as SoMA's, and one magnitude per output feature.

    apply_dora(vit, DoRAConfig(r=16, start_block=8))      # or peft=dict(type="DoRA", r=16, start_block=8)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lowrank import LowRankConfig, LowRankLinear, inject_low_rank_layers
from .model import adapter_layers
from .registry import register_peft_method

__all__ = ["DoRAConfig", "DoRALinear", "apply_dora", "initialize_dora"]


@dataclass
class DoRAConfig(LowRankConfig):
    """Which linear layers DoRA adapts: the :class:`~soma.peft.lowrank.LowRankConfig` fields (rank, scale, targets,
    blocks, ``fused_splits``, ``rank_pattern``, ``train_bias``)."""

    method_name: ClassVar[str] = "DoRA"


class DoRALinear(LowRankLinear):
    """DoRA adapter around an ``nn.Linear`` (see the module docstring).

    Args:
        base_layer, r, alpha, splits, train_bias: as :class:`~soma.peft.lowrank.LowRankLinear`.
        initialize: set the magnitude from the current base weight now; ``False`` leaves it for
            :meth:`initialize` (models whose pretrained weights load after their structure is built).
    """

    method_name = "DoRA"
    adapter_tensor_names = ("lora_A", "lora_B", "lora_magnitude")

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, splits: int = 1,
                 train_bias: bool = True, initialize: bool = True) -> None:
        super().__init__(base_layer, r, alpha=alpha, splits=splits, train_bias=train_bias)
        self.lora_magnitude = nn.Parameter(self._row_norm(base_layer.weight.detach()))
        self._merge_factor: torch.Tensor | None = None  # m / ‖W + sBA‖ as folded in by merge()
        if initialize:
            self.initialize()

    @property
    def merged(self) -> bool:
        return self._merge_factor is not None

    @staticmethod
    def _row_norm(weight: torch.Tensor) -> torch.Tensor:
        """‖W‖ per output feature, summed in at least float32 and returned in ``weight``'s dtype."""
        work = torch.promote_types(weight.dtype, torch.float32)
        return torch.linalg.vector_norm(weight.to(work), dim=1).to(weight.dtype)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def frozen_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        weight = self.base_layer.weight.detach()
        if self.merged:  # W = W' / (m / ‖W + sBA‖) − sBA
            weight = (weight.to(torch.float64) / self._merge_factor.to(torch.float64)[:, None]
                      - self.low_rank_weight().to(torch.float64))
        return weight.to(dtype or self.base_layer.weight.dtype)

    def adapted_weight(self) -> torch.Tensor:
        """``W' = m / ‖W + sBA‖ · (W + sBA)`` (differentiable in ``m``, ``A`` and ``B``; the norm is detached)."""
        combined = self.frozen_weight() + self.low_rank_weight()
        factor = self.lora_magnitude / self._row_norm(combined.detach())
        return factor[:, None] * combined

    def delta_weight(self) -> torch.Tensor:
        """``W' − W``: what merging adds to the frozen base weight."""
        return self.adapted_weight() - self.frozen_weight()

    @torch.no_grad()
    def initialize(self, generator: torch.Generator | None = None) -> None:
        """Start DoRA on the current function: fold a trained adapter (if any) into the base weight, then
        Kaiming-uniform A, zero B and ``m = ‖W‖`` (``generator`` draws A; default: torch's global one).

        Raises:
            RuntimeError: the layer is merged.
        """
        if self.merged:
            raise RuntimeError("unmerge() the layer before re-initialising its adapter.")
        weight = self.base_layer.weight
        if self.lora_B.any():  # keep what the adapter learned so far
            weight.copy_(self.adapted_weight().to(weight.dtype))
        self.lora_B.zero_()
        bound = 1 / self.in_features ** 0.5  # kaiming_uniform_(a=√5), as LoRA, with an optional generator
        self.lora_A.uniform_(-bound, bound, generator=generator)
        self.lora_magnitude.copy_(self._row_norm(weight))

    @torch.no_grad()
    def merge(self, safe_merge: bool = False) -> None:
        """Replace the base weight by ``W'`` (idempotent); the factor is kept so that :meth:`unmerge` is exact."""
        if self.merged:
            return
        weight = self.base_layer.weight
        work = torch.promote_types(weight.dtype, torch.float32)
        combined = weight.to(work) + self.low_rank_weight().to(work)
        factor = self.lora_magnitude.to(work) / self._row_norm(combined)
        merged = factor[:, None] * combined
        if safe_merge and not torch.isfinite(merged).all():
            raise ValueError(f"merging the adapter of {self.base_layer} gives NaN/Inf weights; not merged.")
        weight.copy_(merged)
        self._merge_factor = factor

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` (idempotent)."""
        if not self.merged:
            return
        weight = self.base_layer.weight
        work = self._merge_factor.dtype
        weight.copy_(weight.to(work) / self._merge_factor[:, None] - self.low_rank_weight().to(work))
        self._merge_factor = None

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        weight = self.base_layer.weight
        with torch.no_grad():  # the norm is a constant for the gradient (DoRA §4.3)
            norm = self._row_norm(weight + self.low_rank_weight())
        factor = (self.lora_magnitude / norm).to(x.dtype)
        # m/‖·‖ · (x Wᵀ + s·x Aᵀ Bᵀ) + b: the low-rank part runs on x, as LoRA's
        out = factor * (F.linear(x, weight.to(x.dtype)) + self.low_rank_update(x))
        bias = self.base_layer.bias
        return out if bias is None else out + bias.to(out.dtype)


def apply_dora(model: nn.Module, config: DoRAConfig | dict, initialize: bool = True) -> nn.Module:
    """Wrap the targeted ``nn.Linear`` layers of ``model`` in :class:`DoRALinear`, in place; freeze the rest.

    Args:
        model: any module; with ``initialize=True`` its pretrained weights must be loaded already.
        config: a :class:`DoRAConfig` or a dict of its fields.
        initialize: set the magnitudes now; ``False`` defers it to :func:`initialize_dora`.

    Returns:
        ``model``, with the config recorded as ``model.adapter_config``.
    """
    if isinstance(config, dict):
        config = DoRAConfig.from_dict(config)
    elif not isinstance(config, DoRAConfig):
        raise TypeError(f"`config` must be a DoRAConfig or a dict, got {type(config).__name__}.")

    def make_layer(module: nn.Linear, rank: int, splits: int) -> DoRALinear:
        return DoRALinear(module, rank, alpha=config.alpha, splits=splits, train_bias=config.train_bias,
                          initialize=initialize)

    return inject_low_rank_layers(model, config, make_layer)


def initialize_dora(model: nn.Module) -> nn.Module:
    """Set every DoRA magnitude from the current (pretrained) weights; see :meth:`DoRALinear.initialize`."""
    for layer in adapter_layers(model).values():
        if isinstance(layer, DoRALinear):
            layer.initialize()
    return model


register_peft_method("DoRA", DoRAConfig, apply_dora, initialize_dora)
