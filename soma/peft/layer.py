"""``SoMALinear``: a frozen linear layer whose minor singular components are trainable (arXiv:2412.04077).

For ``W = U S Vᴴ`` and rank r (``scale = alpha / r``), the r smallest triplets become the trainable pair
``A = diag(√(S_r/scale)) Vᴴ_r`` (r × in) and ``B = U_r diag(√(S_r/scale))`` (out × r), and the base layer
keeps the frozen residual ``W_res = W − scale·B A``. ``y = x W_resᵀ + b + scale·(x Aᵀ) Bᵀ`` therefore equals
the pretrained output at initialisation. The layer wraps the original ``nn.Linear`` (``base_layer``), so
unwrapping is exact and nothing is copied.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .decompose import svd_components


class SoMALinear(nn.Module):
    """SoMA adapter around an ``nn.Linear``.

    Args:
        base_layer: the pretrained linear layer (its weight becomes the frozen residual).
        r: adapter rank (per output slice when ``splits > 1``).
        alpha: scaling numerator, ``scale = alpha / r``; ``None`` means ``r``.
        init: ``"minor"`` (SoMA), ``"principal"`` (PiSSA) or ``"lora"``.
        splits: number of equal output slices decomposed separately (3 for a fused q/k/v projection); the
            adapter is block-diagonal: slice i uses rows ``i*r:(i+1)*r`` of ``lora_A``.
        train_bias: make the base layer's bias trainable.
        svd_method: ``"auto"``, ``"gram"`` or ``"svd"`` (see :mod:`soma.peft.decompose`).
        initialize: take the decomposition now. ``False`` creates the adapter with ``B = 0`` (output
            unchanged, base weight untouched) and defers the split to :meth:`initialize`, for models whose
            pretrained weights are loaded after the structure is built.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        alpha: float | None = None,
        init: str = "minor",
        splits: int = 1,
        train_bias: bool = True,
        svd_method: str = "auto",
        initialize: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(base_layer, SoMALinear):
            raise ValueError("this layer is already adapted by SoMA; call unload_soma() before applying it again.")
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"SoMA adapts nn.Linear layers only, got {type(base_layer).__name__}.")
        out_features, in_features = base_layer.weight.shape
        if out_features % splits:
            raise ValueError(f"`splits`={splits} does not divide the {out_features} output features.")
        if not isinstance(r, int) or not 0 < r < min(out_features // splits, in_features):
            raise ValueError(
                f"`r` must satisfy 0 < r < min(out/splits, in) = {min(out_features // splits, in_features)} "
                f"for a Linear({in_features}, {out_features}) with splits={splits}, got {r}."
            )
        if init not in ("minor", "principal", "lora"):
            raise ValueError(f"`init` must be 'minor', 'principal' or 'lora', got {init!r}.")
        self.base_layer = base_layer
        self.r, self.splits, self.init, self.svd_method = r, splits, init, svd_method
        self.scale = (alpha if alpha is not None else r) / r
        self.merged = False
        factory = dict(device=base_layer.weight.device, dtype=base_layer.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(splits * r, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        base_layer.weight.requires_grad_(False)
        if base_layer.bias is not None:
            base_layer.bias.requires_grad_(train_bias)
        if initialize:
            self.initialize()

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def delta_weight(self) -> torch.Tensor:
        """``scale · B A`` as an (out × in) matrix (block-diagonal over the output slices)."""
        b = self.lora_B.view(self.splits, self.out_features // self.splits, self.r)
        a = self.lora_A.view(self.splits, self.r, self.in_features)
        return (torch.bmm(b, a) * self.scale).reshape(self.out_features, self.in_features)

    def residual_weight(self) -> torch.Tensor:
        """The frozen residual ``W_res``, whether merged or not."""
        weight = self.base_layer.weight
        return weight - self.delta_weight().detach() if self.merged else weight

    @torch.no_grad()
    def initialize(self) -> None:
        """Split the current full weight (residual + adapter) anew according to ``init``.

        Called once after the pretrained weights are in place; the decomposition runs in float64 on the
        layer's device and the results are cast back to the layer's dtype.
        """
        if self.merged:
            raise RuntimeError("unmerge() the layer before re-initialising its adapter.")
        if self.init == "lora":
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)  # keep the function
            self.lora_B.zero_()
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            return
        weight = self.base_layer.weight.to(torch.float64)
        if self.lora_B.any():  # re-initialising (or loaded adapters): decompose residual + adapter
            weight += self.delta_weight().to(torch.float64)
        dtype = self.base_layer.weight.dtype
        rows = self.out_features // self.splits
        for index in range(self.splits):
            part = slice(index * rows, (index + 1) * rows)
            u, s, vh = svd_components(weight[part], self.r, self.init, self.svd_method)
            root = (s / self.scale).sqrt()
            self.lora_A[index * self.r:(index + 1) * self.r] = (root[:, None] * vh).to(dtype)
            self.lora_B[part] = (u * root[None, :]).to(dtype)
            # The residual comes from the adapters *as stored* (in the layer dtype), so that residual + delta
            # reproduces W as closely as that dtype allows.
            a = self.lora_A[index * self.r:(index + 1) * self.r].to(torch.float64)
            weight[part] = torch.addmm(weight[part], self.lora_B[part].to(torch.float64), a, alpha=-self.scale)
        self.base_layer.weight.copy_(weight)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``scale·BA`` into the base weight (no adapter cost at inference). Idempotent."""
        if not self.merged:
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`. Idempotent."""
        if self.merged:
            self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        hidden = nn.functional.linear(x.to(self.lora_A.dtype), self.lora_A)  # (..., splits*r)
        if self.splits == 1:
            update = nn.functional.linear(hidden, self.lora_B)
        else:
            hidden = hidden.unflatten(-1, (self.splits, self.r))
            b = self.lora_B.view(self.splits, self.out_features // self.splits, self.r)
            update = torch.einsum("...sr,sor->...so", hidden, b).flatten(-2)
        return out + (self.scale * update).to(out.dtype)

    def extra_repr(self) -> str:
        return f"r={self.r}, scale={self.scale:g}, init={self.init!r}, splits={self.splits}, merged={self.merged}"
