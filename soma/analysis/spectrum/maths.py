"""The numbers: singular values of each adapted matrix (q, k and v of a fused qkv separately) before and after
training, and the relative changes, in float64.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ...peft import AdapterLayer, adapter_layers
from ...peft.base import as_adapter_layer



_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


@dataclass
class MatrixSpectrum:
    """One adapted weight matrix (one q/k/v slice of a fused layer) and its numbers.

    Attributes:
        layer: module name of the layer (``"blocks.8.attn.qkv"``).
        label: the matrix within the block (``"q"``, ``"k"``, ``"v"``, ``"proj"``, ``"fc1"``, ...).
        block: block index, or ``None`` for a layer outside the blocks.
        rank: r of the adapter.
        which: ``"minor"`` or ``"principal"``: the components the adapter took over (``"lora"``: none).
        reference: singular values of the reference weight (pretrained, or the checkpoint's own when no base
            weights are available), descending, float64.
        trained: singular values of the trained weight, or ``None`` without a checkpoint.
        weight_norm: ``||W||_F`` of the reference weight.
        adapted_norm: ``||W_adapted||_F``, the norm of its rank-r part the adapter took over (0 for LoRA).
        delta_norm: ``||W_trained − W||_F``, or ``None`` without a trained checkpoint and base weights.
        shape: (rows, columns) of the matrix.
    """

    layer: str
    label: str
    block: int | None
    rank: int
    which: str
    reference: np.ndarray
    trained: np.ndarray | None = None
    weight_norm: float = 0.0
    adapted_norm: float = 0.0
    delta_norm: float | None = None
    shape: tuple[int, ...] = ()

    @property
    def relative_to_adapted(self) -> float | None:
        """``||ΔW|| / ||W_adapted||`` (NaN when nothing was adapted at init, as for LoRA)."""
        return None if self.delta_norm is None else _ratio(self.delta_norm, self.adapted_norm)

    @property
    def relative_to_weight(self) -> float | None:
        """``||ΔW|| / ||W||``."""
        return None if self.delta_norm is None else _ratio(self.delta_norm, self.weight_norm)

    def adapted_indices(self) -> np.ndarray:
        """Indices (into the descending spectrum) of the components the adapter took over."""
        count = self.reference.size
        if self.which == "principal":
            return np.arange(min(self.rank, count))
        if self.which == "minor":
            return np.arange(max(count - self.rank, 0), count)
        return np.arange(0)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.nan
    return numerator / denominator


@dataclass
class SpectrumReport:
    """All matrices analysed, and where the reference weights came from."""

    matrices: list[MatrixSpectrum]
    reference: str  # a sentence: "pretrained weights of <file>" / "the checkpoint's own weights"
    has_changes: bool = False
    notes: list[str] = field(default_factory=list)

    def blocks(self) -> list[int | None]:
        return sorted({m.block for m in self.matrices}, key=lambda b: -1 if b is None else b)

    def block_changes(self) -> dict[int | None, tuple[float, float]]:
        """Per block: (``||ΔW|| / ||W_adapted||``, ``||ΔW|| / ||W||``) over all its adapted matrices together."""
        changes = {}
        for block in self.blocks():
            members = [m for m in self.matrices if m.block == block and m.delta_norm is not None]
            if not members:
                continue
            delta = math.sqrt(sum(m.delta_norm ** 2 for m in members))
            adapted = math.sqrt(sum(m.adapted_norm ** 2 for m in members))
            weight = math.sqrt(sum(m.weight_norm ** 2 for m in members))
            changes[block] = (_ratio(delta, adapted), _ratio(delta, weight))
        return changes


# ---------------------------------------------------------------------------------------------- weights
def _label(layer: str, index: int, splits: int) -> str:
    leaf = layer.rsplit(".", 1)[-1]
    if splits == 1:
        return leaf
    if splits == 3 and leaf == "qkv":
        return "qkv"[index]
    return f"{leaf}[{index}]"


def _block_of(name: str) -> int | None:
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


@torch.no_grad()
def _adapter_parts(layer: AdapterLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen weight (SoMA's residual) and the adapter's change (``scale·BA`` for SoMA) of an adapted layer, both
    exact in float64."""
    exact = copy.deepcopy(layer).to(torch.float64)  # the layer's own formula, in float64 arithmetic
    return layer.frozen_weight(torch.float64), exact.delta_weight()


@torch.no_grad()
def _full_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight a layer applies, in float64: frozen weight + adapter change when adapted, else the plain one."""
    layer = as_adapter_layer(module)
    if layer is not None:
        frozen, delta = _adapter_parts(layer)
        return frozen + delta
    return module.weight.detach().to(torch.float64)


def _svdvals(weight: torch.Tensor) -> np.ndarray:
    return torch.linalg.svdvals(weight).numpy()


def _selected(names: Iterable[str], blocks: Sequence[int] | None) -> list[str]:
    return [n for n in names if blocks is None or _block_of(n) in blocks]


def analyse_models(reference: torch.nn.Module | None, trained: torch.nn.Module | None,
                   layout: torch.nn.Module, blocks: Sequence[int] | None = None) -> list[MatrixSpectrum]:
    """Spectra (and changes, given both models) of every SoMA layer of ``layout`` (by module name).

    Args:
        reference: the SoMA-initialised pretrained model, or ``None`` (then the trained one is shown).
        trained: the trained model (SoMA layers, or plain layers of a merged checkpoint), or ``None``.
        layout: the model whose SoMA layers say which matrices to analyse, with rank, slices and init.
        blocks: only these block indices (default: all).
    """
    matrices = []
    layers = adapter_layers(layout)
    for name in _selected(layers, blocks):
        spec = layers[name]
        splits = spec.adapted_matrices
        rows = spec.base_layer.weight.shape[0] // splits
        init = getattr(spec, "init", None)  # SoMA's split: the minor or principal components it took over
        which = init if init in ("minor", "principal") else "none"
        ref_weight = adapted = None
        if reference is not None:
            residual, adapted = _adapter_parts(as_adapter_layer(reference.get_submodule(name)))
            ref_weight = residual + adapted
        new_weight = _full_weight(trained.get_submodule(name)) if trained is not None else None
        for index in range(splits):
            part = slice(index * rows, (index + 1) * rows)
            shown = ref_weight[part] if ref_weight is not None else new_weight[part]
            values = _svdvals(shown)
            matrix = MatrixSpectrum(layer=name, label=_label(name, index, splits), block=_block_of(name),
                                    rank=getattr(spec, "r", 0), which=which, reference=values,
                                    weight_norm=float(np.sqrt((values ** 2).sum())), shape=tuple(shown.shape))
            # The adapted part's norm: of the adapter product itself when the initial split is known, else of
            # the spectrum's r minor/principal values (what SoMA's SVD split would take).
            if adapted is not None:
                matrix.adapted_norm = float(torch.linalg.matrix_norm(adapted[part]))
            else:
                matrix.adapted_norm = float(np.sqrt((values[matrix.adapted_indices()] ** 2).sum()))
            if new_weight is not None and ref_weight is not None:
                matrix.trained = _svdvals(new_weight[part])
                matrix.delta_norm = float(torch.linalg.matrix_norm(new_weight[part] - ref_weight[part]))
            matrices.append(matrix)
    return matrices


def analyse_state_dict(state: dict[str, torch.Tensor], rank: int, which: str = "minor",
                       blocks: Sequence[int] | None = None) -> list[MatrixSpectrum]:
    """Spectra of the block linear weights of a plain (timm-layout) state dict; a fused qkv as 3 matrices."""
    matrices = []
    names = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 2 and _block_of(k) is not None
             and "norm" not in k]
    for key in _selected(names, blocks):
        layer = key[: -len(".weight")]
        weight = state[key].to(torch.float64)
        splits = 3 if layer.endswith("qkv") and weight.shape[0] % 3 == 0 else 1
        rows = weight.shape[0] // splits
        for index in range(splits):
            part = weight[index * rows:(index + 1) * rows]
            values = _svdvals(part)
            matrix = MatrixSpectrum(layer=layer, label=_label(layer, index, splits), block=_block_of(layer),
                                    rank=min(rank, values.size), which=which, reference=values,
                                    weight_norm=float(np.sqrt((values ** 2).sum())), shape=tuple(part.shape))
            matrix.adapted_norm = float(np.sqrt((values[matrix.adapted_indices()] ** 2).sum()))
            matrices.append(matrix)
    if not matrices:
        raise ValueError("the weight file has no 2-D `blocks.N.*.weight` matrices; is it a ViT backbone state dict?")
    return matrices
