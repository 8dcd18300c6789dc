"""``SoMALinear``: a frozen linear layer whose minor singular components are trainable (arXiv:2412.04077).

For a pretrained weight ``W = U S Vᴴ``, rank r and ``scale = alpha / r``: keep the r smallest
triplets (``init="minor"``; ``"principal"`` keeps the r largest, PiSSA-style), set ``S_r ← S_r / scale`` and

    A = diag(√S_r) Vᴴ_r   (r × in, trainable)      B = U_r diag(√S_r)   (out × r, trainable)
    W_res = W − scale · B A                         (frozen, stored in the wrapped layer)

so ``y = x W_resᵀ + b + scale·(x Aᵀ) Bᵀ`` equals the pretrained output at initialisation. ``init="lora"`` is
plain LoRA (Kaiming-uniform A, zero B, W untouched). ``init="released"`` is what the official SoMA code trains:
A and B are the minor factors (as above) of a *random* ``nn.Linear`` default initialisation, W is untouched, so
the function starts at ``W + scale·B₀A₀`` (that code decomposes the layer before the pretrained weights load, and
the load then overwrites only the residual slot with W). The layer wraps the original ``nn.Linear`` as
``base_layer`` (peft's composition pattern), so nothing is copied and unwrapping is exact.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import INIT_MODES
from .decompose import resolve_method, svd_components


def default_linear_weight(out_features: int, in_features: int, bias: bool = True,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """The float32 CPU weight that ``nn.Linear(in_features, out_features, bias)`` draws when it is constructed.

    Kaiming-uniform with ``a=√5`` (i.e. U(±1/√in)); with ``bias`` the bias is drawn too and discarded, so that
    ``generator`` (default: torch's global one) advances exactly as the constructor's draws would.
    """
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias:
        bound = 1 / math.sqrt(in_features)
        torch.empty(out_features).uniform_(-bound, bound, generator=generator)
    return weight


def minor_factors_float32(weight: torch.Tensor, r: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` from the r smallest singular triplets of ``weight``, computed as the official SoMA code does.

    float32 ``torch.linalg.svd`` and ``S_r / scale``, ``A = diag(√S_r) Vᴴ_r``, ``B = U_r diag(√S_r)``, so that
    ``scale·B A`` is the rank-r minor part of ``weight`` (up to float32 rounding).
    """
    u, s, vh = torch.linalg.svd(weight.to(torch.float32), full_matrices=False)
    root = torch.diag(torch.sqrt(s[-r:] / scale))
    return root @ vh[-r:], u[:, -r:] @ root


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


class SoMALinear(nn.Module):
    """SoMA adapter around an ``nn.Linear``.

    Args:
        base_layer: the pretrained layer; its weight is replaced in place by the frozen residual.
        r: adapter rank (per output slice when ``splits > 1``).
        alpha: scaling numerator, ``scale = alpha / r``. Default: ``None`` (``alpha = r``).
        init: ``"minor"`` (SoMA), ``"principal"`` (PiSSA), ``"lora"`` or ``"released"`` (see the module
            docstring).
        splits: number of equal output slices decomposed separately (3 for a fused q/k/v projection). The
            adapter is block-diagonal: rows ``i*r:(i+1)*r`` of ``lora_A`` pair with the rows of ``lora_B``
            that belong to slice i, exactly as if the slices were separate layers.
        train_bias: the base layer's bias is trainable.
        svd_method: ``"auto"``, ``"gram"`` or ``"svd"`` (see :mod:`soma.peft.decompose`).
        initialize: take the decomposition now. ``False`` builds the adapter with ``B = 0`` (output unchanged,
            base weight untouched) and defers the split to :meth:`initialize`, for models whose pretrained
            weights are loaded after their structure is built.

    Raises:
        TypeError: ``base_layer`` is not an ``nn.Linear``.
        ValueError: ``base_layer`` is already a ``SoMALinear``, or ``r``/``splits``/``init`` are invalid.
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
        check_rank(r, out_features, in_features, splits)
        if init not in INIT_MODES:
            raise ValueError(f"`init` must be one of {INIT_MODES}, got {init!r}.")
        if alpha is not None and not alpha > 0:
            raise ValueError(f"`alpha` must be positive or None (meaning alpha = r), got {alpha!r}.")
        resolve_method(svd_method, "cpu")  # validates the name before any work is done
        self.base_layer = base_layer
        self._r, self._splits, self._merged = r, splits, False
        self._scale = float(alpha if alpha is not None else r) / r
        self.init, self.svd_method, self.train_bias = init, svd_method, train_bias
        factory = dict(device=base_layer.weight.device, dtype=base_layer.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(splits * r, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft's LoRA; B = 0 keeps the function
        base_layer.weight.requires_grad_(False)
        if base_layer.bias is not None:
            base_layer.bias.requires_grad_(train_bias)
        if initialize:
            self.initialize()

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
    def delta_weight(self) -> torch.Tensor:
        """``scale · B A`` as an (out × in) matrix, block-diagonal over the output slices."""
        b = self.lora_B.view(self.splits, self.out_features // self.splits, self.r)
        a = self.lora_A.view(self.splits, self.r, self.in_features)
        return (torch.bmm(b, a) * self.scale).reshape(self.out_features, self.in_features)

    @torch.no_grad()
    def residual_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The frozen residual ``W_res``, whether merged or not (in ``dtype``, default the layer's).

        When merged it is recomputed as ``weight − scale·BA`` in float64 before the cast, so that low-precision
        models lose as little as possible.
        """
        weight = self.base_layer.weight.detach()
        if self.merged:
            weight = weight.to(torch.float64) - self.delta_weight().to(torch.float64)
        return weight.to(dtype or self.base_layer.weight.dtype)

    @torch.no_grad()
    def initialize(self, generator: torch.Generator | None = None) -> None:
        """Split the layer's current function (residual + adapter) anew according to ``init``.

        Call it once the pretrained weights are in place. The decomposition runs in float64 on the layer's
        device; adapters and residual are cast back to the layer's dtype.

        Args:
            generator: for ``init="released"``: the source of the random weights, drawn per output slice as
                :func:`default_linear_weight` (each slice as its own ``nn.Linear(in, out / splits)``, weight
                then bias, in slice order). Default: torch's global generator. Unused by the other modes.

        Raises:
            RuntimeError: the layer is merged.
        """
        if self.merged:
            raise RuntimeError("unmerge() the layer before re-initialising its adapter.")
        dtype = self.base_layer.weight.dtype
        if self.init == "released":
            self._initialize_from_random(generator)
            return
        if self.init == "lora":
            self.base_layer.weight.copy_(self.base_layer.weight.to(torch.float64)
                                         + self.delta_weight().to(torch.float64))  # keep the function
            self.lora_B.zero_()
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            return
        weight = self.base_layer.weight.to(torch.float64, copy=True)
        if self.lora_B.any():  # re-initialising or loaded adapters: decompose residual + adapter, not W_res
            weight += self.delta_weight().to(torch.float64)
        rows = self.out_features // self.splits
        for index in range(self.splits):
            part, a_rows = slice(index * rows, (index + 1) * rows), slice(index * self.r, (index + 1) * self.r)
            u, s, vh = svd_components(weight[part], self.r, self.init, self.svd_method)
            root = (s / self.scale).sqrt()
            self.lora_A[a_rows] = (root[:, None] * vh).to(dtype)
            self.lora_B[part] = (u * root[None, :]).to(dtype)
            # The residual is taken from the adapters *as stored* (after the cast to the layer dtype), so
            # that residual + scale·BA reproduces W as closely as that dtype allows.
            a, b = self.lora_A[a_rows].to(torch.float64), self.lora_B[part].to(torch.float64)
            weight[part] = torch.addmm(weight[part], b, a, alpha=-self.scale)
        self.base_layer.weight.copy_(weight)

    def _initialize_from_random(self, generator: torch.Generator | None) -> None:
        weight = self.base_layer.weight
        if self.lora_B.any():  # keep what the adapter learned so far in the base weight, as "lora" does
            weight.copy_(weight.to(torch.float64) + self.delta_weight().to(torch.float64))
        rows = self.out_features // self.splits
        for index in range(self.splits):
            random_weight = default_linear_weight(rows, self.in_features, self.base_layer.bias is not None, generator)
            a, b = minor_factors_float32(random_weight, self.r, self.scale)
            self.lora_A[index * self.r:(index + 1) * self.r] = a.to(self.lora_A)
            self.lora_B[index * rows:(index + 1) * rows] = b.to(self.lora_B)

    @torch.no_grad()
    def merge(self, safe_merge: bool = False) -> None:
        """Fold ``scale·BA`` into the base weight (no adapter cost at inference). Idempotent.

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
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        # The adapter runs in the input dtype (under autocast F.linear casts further, as for the base layer).
        hidden = F.linear(x, self.lora_A.to(x.dtype))  # (..., splits*r)
        b = self.lora_B.to(x.dtype)
        if self.splits == 1:
            update = F.linear(hidden, b)
        else:  # block-diagonal: slice i of the output only sees rows i*r:(i+1)*r of the hidden code
            hidden = hidden.unflatten(-1, (self.splits, self.r))
            b = b.view(self.splits, self.out_features // self.splits, self.r)
            update = torch.einsum("...sr,sor->...so", hidden, b).flatten(-2)
        return out + (update * self.scale).to(out.dtype)

    def extra_repr(self) -> str:
        return (f"r={self.r}, scale={self.scale:g}, init={self.init!r}, splits={self.splits}, "
                f"train_bias={self.train_bias}, merged={self.merged}")
