"""SoMA: a frozen linear layer whose minor singular components are trainable (arXiv:2412.04077).

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

This module is the SoMA method, as peft's ``tuners/lora`` is LoRA: its config (:class:`SoMAConfig`), its layer
(:class:`SoMALinear`, on :class:`~soma.peft.lowrank.LowRankLinear`) and its model functions (:func:`apply_soma`,
:func:`initialize_soma`, :func:`soma_layers`); it registers itself as ``peft=dict(type="SoMA")``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn

from .decompose import resolve_method, svd_components
from .lowrank import LowRankConfig, LowRankLinear, inject_low_rank_layers
from .model import CONFIG_ATTR
from .registry import is_int, register_peft_method

__all__ = ["SoMAConfig", "SoMALinear", "apply_soma", "initialize_soma", "soma_layers", "INIT_MODES", "SVD_METHODS"]

INIT_MODES = ("minor", "principal", "lora", "released")
SVD_METHODS = ("auto", "gram", "svd")

@dataclass
class SoMAConfig(LowRankConfig):
    """Which linear layers SoMA adapts (the :class:`~soma.peft.lowrank.LowRankConfig` fields), and how.

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
        if not is_int(self.init_seed) or self.init_seed < 0:
            raise ValueError(f"`init_seed` must be an int >= 0, got {self.init_seed!r}.")


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

    return inject_low_rank_layers(model, config, make_layer)


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


register_peft_method("SoMA", SoMAConfig, apply_soma, initialize_soma)
