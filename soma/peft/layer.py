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

:class:`LowRankLinear` holds what the low-rank methods share (``lora_A``/``lora_B``, fused slices, merging, the
adapter branch of the forward; DoRA builds on it too); :class:`SoMALinear` adds SoMA's initialisations. The SoMA
method itself (:func:`apply_soma`, :func:`initialize_soma`, :func:`soma_layers`) is at the end of this module.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import AdapterLayer
from .config import INIT_MODES, SoMAConfig
from .decompose import resolve_method, svd_components
from .model import CONFIG_ATTR, inject_adapter_layers


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


class SoMALinear(LowRankLinear):
    """SoMA adapter around an ``nn.Linear`` (see the module docstring).

    Args:
        base_layer: the pretrained layer; its weight is replaced in place by the frozen residual.
        r, alpha, splits, train_bias: as :class:`LowRankLinear`.
        init: ``"minor"`` (SoMA), ``"principal"`` (PiSSA), ``"lora"`` or ``"released"`` (see the module
            docstring).
        svd_method: ``"auto"``, ``"gram"`` or ``"svd"`` (see :mod:`soma.peft.decompose`).
        svd_device: where each matrix is decomposed (e.g. ``"cuda"`` for weights on the CPU); default the
            weight's device.
        initialize: take the decomposition now. ``False`` builds the adapter with ``B = 0`` (output unchanged,
            base weight untouched) and defers the split to :meth:`initialize`, for models whose pretrained
            weights are loaded after their structure is built.

    Raises:
        TypeError: ``base_layer`` is not an ``nn.Linear``.
        ValueError: ``base_layer`` is already adapted, or ``r``/``splits``/``init`` are invalid.
    """

    method_name = "SoMA"

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
        svd_device: str | None = None,
    ) -> None:
        if init not in INIT_MODES:
            raise ValueError(f"`init` must be one of {INIT_MODES}, got {init!r}.")
        resolve_method(svd_method, "cpu")  # validates the name before any work is done
        super().__init__(base_layer, r, alpha=alpha, splits=splits, train_bias=train_bias)
        self.init, self.svd_method, self.svd_device = init, svd_method, svd_device
        if initialize:
            self.initialize()

    def layer_info(self) -> dict:
        return {**super().layer_info(), "init": self.init}

    @torch.no_grad()
    def residual_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The frozen residual ``W_res``, whether merged or not (in ``dtype``, default the layer's).

        When merged it is recomputed as ``weight − scale·BA`` in float64 before the cast, so that low-precision
        models lose as little as possible.
        """
        return self.frozen_weight(dtype)

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
        adapted = bool(self.lora_B.any())  # re-initialising or loaded adapters: decompose residual + adapter
        rows = self.out_features // self.splits
        for index in range(self.splits):
            part, a_rows = slice(index * rows, (index + 1) * rows), slice(index * self.r, (index + 1) * self.r)
            # One slice at a time in float64: the extra memory is one matrix's worth (7B: 8192×4096).
            weight = self.base_layer.weight[part].to(torch.float64)
            if adapted:
                weight.addmm_(self.lora_B[part].to(torch.float64), self.lora_A[a_rows].to(torch.float64),
                              alpha=self.scale)
            u, s, vh = svd_components(weight, self.r, self.init, self.svd_method, self.svd_device)
            root = (s / self.scale).sqrt()
            self.lora_A[a_rows] = (root[:, None] * vh).to(dtype)
            self.lora_B[part] = (u * root[None, :]).to(dtype)
            # The residual is taken from the adapters *as stored* (after the cast to the layer dtype), so
            # that residual + scale·BA reproduces W as closely as that dtype allows.
            a, b = self.lora_A[a_rows].to(torch.float64), self.lora_B[part].to(torch.float64)
            self.base_layer.weight[part] = weight.addmm_(b, a, alpha=-self.scale)
            del weight  # before the next slice's copy

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


    def extra_repr(self) -> str:
        return (f"r={self.r}, scale={self.scale:g}, init={self.init!r}, splits={self.splits}, "
                f"train_bias={self.train_bias}, merged={self.merged}")


# ---------------------------------------------------------------------------------------------- the SoMA method
def soma_layers(model: nn.Module) -> dict[str, SoMALinear]:
    """All :class:`SoMALinear` layers of ``model`` (SoMA, PiSSA, LoRA), by module name (in module order)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, SoMALinear)}


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
        ``model`` itself, with the config recorded as ``model.adapter_config``.

    Raises:
        ValueError: adapters are already applied, no module matches, every match has rank 0, or a rank does not
            fit a layer.
        TypeError: a matched module is not an ``nn.Linear``.
    """
    if isinstance(config, dict):
        config = SoMAConfig.from_dict(config)
    elif not isinstance(config, SoMAConfig):
        raise TypeError(f"`config` must be a SoMAConfig or a dict, got {type(config).__name__}.")

    def make_layer(module: nn.Linear, rank: int, splits: int) -> SoMALinear:
        return SoMALinear(module, rank, alpha=config.alpha, init=config.init, splits=splits,
                          train_bias=config.train_bias, svd_method=config.svd_method, initialize=initialize,
                          svd_device=config.svd_device)

    return inject_adapter_layers(model, config, make_layer)


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
    config = config if isinstance(config, SoMAConfig) else None
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
