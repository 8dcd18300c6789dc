"""Any HF peft tuner (LoRA, LoHa, LoKr, IA³, OFT, ...) as an adapter method: ``peft=dict(type="HFPeft", ...)``.

The tuner config is peft's own, by class name, with peft's own options::

    peft=dict(type="HFPeft", config=dict(type="LoraConfig", r=16, lora_alpha=16), start_block=8)

``config`` is built as ``getattr(peft, config.pop("type"))(**config)`` and injected with
``peft.inject_adapter_in_model`` (every other parameter is frozen, as peft does). ``start_block``/``end_block``
are a shorthand for peft's ``layers_to_transform=list(range(start, end))`` with ``layers_pattern="blocks"``
(the timm ViT's block list); ``target_modules`` defaults to the backbone's (``attn.qkv``, ``attn.proj``,
``mlp.fc1``, ``mlp.fc2``) when the peft config names none. peft's tuner layers take part in the model-level
functions (merge, unload, adapter state dicts) through :class:`HFTunerLayer`, a view registered with
:func:`soma.peft.base.register_adapter_layer_view`.

peft is an optional dependency: it is imported when a model is adapted, never by ``import soma.peft``.
"""
from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from .base import AdapterLayer, register_adapter_layer_view
from .model import CONFIG_ATTR, adapter_layers, check_not_adapted
from .registry import MethodConfig, is_int, register_peft_method

__all__ = ["HFPeftConfig", "HFTunerLayer", "apply_hf_peft", "initialize_hf_peft", "PEFT_REQUIREMENT"]

PEFT_REQUIREMENT = "peft==0.21.2"
# Set on each tuner layer by apply_hf_peft: (peft config, module name), to re-initialise it after weights load.
_ORIGIN_ATTR = "_soma_hf_peft_origin"


def import_peft() -> Any:
    """The ``peft`` package, or an ImportError that says how to install it."""
    try:
        import peft
    except ImportError:
        raise ImportError(f"`peft=dict(type='HFPeft')` needs HF peft, an optional dependency: "
                          f"pip install {PEFT_REQUIREMENT}") from None
    return peft


@dataclass
class HFPeftConfig(MethodConfig):
    """An HF peft tuner config by name, and the blocks it adapts.

    Args:
        config: ``dict(type="LoraConfig", **options)``: a config class of the ``peft`` package and its options.
        target_modules: used as peft's ``target_modules`` when ``config`` has none (a backbone's default).
        start_block: shorthand for ``layers_to_transform=list(range(start_block, end_block or depth))`` and
            ``layers_pattern``; ``None`` leaves peft's options as given.
        end_block: if set, only blocks ``< end_block`` are adapted (with ``start_block``).
        layers_pattern: the name of the block list in module names (``"blocks"`` in timm's ViTs).
    """

    method_name: ClassVar[str] = "HFPeft"
    options_hint: ClassVar[str] = " (peft's own options go into `config`)"

    config: dict[str, Any] = field(default_factory=dict)
    target_modules: tuple[str, ...] | None = None
    start_block: int | None = None
    end_block: int | None = None
    layers_pattern: str = "blocks"

    def __post_init__(self) -> None:
        if not isinstance(self.config, dict) or not isinstance(self.config.get("type"), str):
            raise ValueError("`config` must be a dict with `type` naming a peft config class, e.g. "
                             f"dict(type='LoraConfig', r=16, lora_alpha=16), got {self.config!r}.")
        # plain data (an mmengine ConfigDict has to_dict()), so that adapter files hold no config classes
        self.config = self.config.to_dict() if hasattr(self.config, "to_dict") else copy.deepcopy(dict(self.config))
        if isinstance(self.target_modules, list):
            self.target_modules = tuple(self.target_modules)
        for name in ("start_block", "end_block"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 0):
                raise ValueError(f"`{name}` must be None or an int >= 0, got {value!r}.")
        if self.end_block is not None and (self.start_block is None or self.end_block <= self.start_block):
            raise ValueError(f"`end_block` needs a smaller `start_block`, got start_block={self.start_block!r}, "
                             f"end_block={self.end_block!r}.")
        if self.start_block is not None and "layers_to_transform" in self.config:
            raise ValueError("give either `start_block`/`end_block` or peft's `layers_to_transform`, not both.")

    def peft_config(self, model: nn.Module) -> Any:
        """The ``peft.PeftConfig`` for ``model`` (whose block count bounds ``start_block``)."""
        peft = import_peft()
        options = dict(self.config)
        name = options.pop("type")
        config_class = getattr(peft, name, None)
        if not (isinstance(config_class, type) and issubclass(config_class, peft.PeftConfig)):
            known = sorted(n for n in dir(peft) if n.endswith("Config") and n != "PeftConfig")
            raise ValueError(f"peft has no tuner config class {name!r}; known ones: {known}.")
        if options.get("target_modules") is None and self.target_modules is not None:
            options["target_modules"] = list(self.target_modules)
        if self.start_block is not None:
            pattern = re.compile(rf"(?:^|\.){re.escape(self.layers_pattern)}\.(\d+)(?:\.|$)")
            depth = 1 + max((int(m.group(1)) for n, _ in model.named_modules() if (m := pattern.search(n))),
                            default=-1)
            end = self.end_block if self.end_block is not None else depth
            if not self.start_block < end:
                raise ValueError(f"no block in [{self.start_block}, {end}): the model has {depth} "
                                 f"'{self.layers_pattern}' blocks.")
            options.update(layers_to_transform=list(range(self.start_block, end)), layers_pattern=self.layers_pattern)
        return config_class(**options)

    @property
    def bias(self) -> str:
        """peft's ``bias`` option: ``"none"`` (its default), ``"all"`` or ``"<method>_only"`` (e.g. ``"lora_only"``)."""
        return self.config.get("bias", "none")

    def trained_base_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """With ``bias="all"``, every bias of ``model``, as peft trains them (``tuners_utils``'
        ``_mark_only_adapters_as_trainable``: parameters named ``bias``); none otherwise."""
        if self.bias != "all":
            return {}
        return {name: param for name, param in model.named_parameters() if name == "bias" or name.endswith(".bias")}


# ---------------------------------------------------------------------------------------------- the view
def _is_tuner_layer(module: nn.Module) -> bool:
    tuners = sys.modules.get("peft.tuners.tuners_utils")  # never imports peft: without it no module is one
    return tuners is not None and isinstance(module, tuners.BaseTunerLayer)


def _peft_tensor_names() -> tuple[str, ...]:
    tuners = sys.modules.get("peft.tuners.tuners_utils")
    if tuners is None:
        return ()
    pending, names = [tuners.BaseTunerLayer], set()
    while pending:
        cls = pending.pop()
        names.update(getattr(cls, "adapter_layer_names", ()))
        pending += cls.__subclasses__()
    return tuple(names)


class HFTunerLayer(AdapterLayer):
    """An :class:`AdapterLayer` view of a peft ``BaseTunerLayer``: it drives the layer, it is no part of the model.

    ``delta_weight`` is peft's ``get_delta_weight`` summed over the active adapters (tuners without it, such as
    IA³, raise ``NotImplementedError``); the trained tensors are the layer's ``adapter_layer_names`` entries of the
    active adapters plus the base layer's bias where the peft config's ``bias`` option trains it (``"all"``,
    ``"lora_only"``), decided from the config as peft does, not from the current ``requires_grad`` flags. Only for
    layers peft injected outside :func:`apply_hf_peft` (no config known) are the flags read.
    """

    method_name = "HFPeft"

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "layer", layer)  # not registered: the view owns no parameters

    @property
    def base_layer(self) -> nn.Module:  # type: ignore[override]
        return self.layer.get_base_layer()

    @property
    def merged(self) -> bool:
        return bool(self.layer.merged)

    @property
    def layer_type(self) -> str:
        cls = type(self.layer)
        return f"peft.{cls.__module__.split('.')[-2]}.{cls.__qualname__}"  # e.g. peft.lora.Linear

    def initialize(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise the adapter from the current base weight, as peft would inject it now (in place)."""
        reinitialize_tuner_layer(self.layer)

    def delta_weight(self) -> torch.Tensor:
        if not hasattr(self.layer, "get_delta_weight"):
            raise NotImplementedError(f"{self.layer_type} has no dense weight change (peft's get_delta_weight).")
        return sum(self.layer.get_delta_weight(name) for name in self.layer.active_adapters)

    def merge(self, safe_merge: bool = False) -> None:
        if not self.merged:
            self.layer.merge(safe_merge=safe_merge)

    def unmerge(self) -> None:
        if self.merged:
            self.layer.unmerge()

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for attribute in self.layer.adapter_layer_names:
            container = getattr(self.layer, attribute)
            for adapter in self.layer.active_adapters:
                if adapter not in container:
                    continue
                part = container[adapter]
                if isinstance(part, nn.Parameter):
                    tensors[f"{attribute}.{adapter}"] = part
                else:
                    tensors.update({f"{attribute}.{adapter}.{n}": p for n, p in part.named_parameters()})
        origin = getattr(self.layer, _ORIGIN_ATTR, None)
        if origin is None:  # injected by peft itself: its flags are peft's decision
            tensors.update({f"base_layer.{name}": param for name, param in self.layer.base_layer.named_parameters()
                            if param.requires_grad})
        elif getattr(origin[0], "bias", "none") != "none" and getattr(self.layer.base_layer, "bias", None) is not None:
            tensors["base_layer.bias"] = self.layer.base_layer.bias
        return tensors

    def layer_info(self) -> dict[str, Any]:
        return {"weight_shape": list(self.base_layer.weight.shape),
                "tensors": {name: list(t.shape) for name, t in self.trained_tensors().items()}}

    @torch.no_grad()
    def frozen_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        if not self.merged:
            weight = self.base_layer.weight.detach().clone()
        else:  # peft's merges are not all additive (IA³, DoRA): read the weight unmerged
            self.layer.unmerge()
            weight = self.base_layer.weight.detach().clone()
            self.layer.merge()
        return weight.to(dtype or weight.dtype)

    def unwrapped(self) -> nn.Module:
        return self.layer.get_base_layer()


register_adapter_layer_view(_is_tuner_layer, HFTunerLayer, _peft_tensor_names)


# ---------------------------------------------------------------------------------------------- the method
def _hf_layers(model: nn.Module) -> dict[str, HFTunerLayer]:
    return {name: layer for name, layer in adapter_layers(model).items() if isinstance(layer, HFTunerLayer)}


def apply_hf_peft(model: nn.Module, config: HFPeftConfig | dict, initialize: bool = True) -> nn.Module:
    """Inject the peft tuner of ``config`` into ``model`` in place (``peft.inject_adapter_in_model``).

    peft freezes every other parameter. ``initialize`` is accepted for the method interface: peft initialises
    from the current weights at injection; call :func:`initialize_hf_peft` after loading other weights.

    Returns:
        ``model``, with the config recorded as ``model.adapter_config``.

    Raises:
        ImportError: peft is not installed (the message says which version to install).
        ValueError: adapters are already applied, or peft refuses the config (no module matches, ...).
    """
    if isinstance(config, dict):
        config = HFPeftConfig.from_dict(config)
    elif not isinstance(config, HFPeftConfig):
        raise TypeError(f"`config` must be an HFPeftConfig or a dict, got {type(config).__name__}.")
    check_not_adapted(model)
    peft = import_peft()
    peft_config = config.peft_config(model)
    peft.inject_adapter_in_model(copy.deepcopy(peft_config), model)
    for name, layer in _hf_layers(model).items():
        setattr(layer.layer, _ORIGIN_ATTR, (peft_config, name))
    setattr(model, CONFIG_ATTR, config)
    return model


@torch.no_grad()
def reinitialize_tuner_layer(layer: nn.Module) -> None:
    """Give a tuner layer injected by :func:`apply_hf_peft` the initialisation peft would give it now, in place.

    peft's initialisation may read the base weight (DoRA's magnitude, PiSSA), which was random when the model was
    built. The layer's base layer is injected anew into an otherwise empty module tree under the same name (so
    ``layers_to_transform`` and ``rank_pattern`` match alike), and the fresh adapter tensors are copied into the
    layer's own parameters, which optimizers may already hold.
    """
    origin = getattr(layer, _ORIGIN_ATTR, None)
    if origin is None:
        raise RuntimeError(f"{type(layer).__name__} was not injected by soma.peft's HFPeft; initialise it with peft.")
    peft_config, name = origin
    root = parent = nn.Module()
    *path, leaf = name.split(".")
    for part in path:
        child = nn.Module()
        parent.add_module(part, child)
        parent = child
    parent.add_module(leaf, layer.get_base_layer())
    import_peft().inject_adapter_in_model(copy.deepcopy(peft_config), root)
    fresh = dict(root.get_submodule(name).named_parameters())
    for key, param in layer.named_parameters():
        if not key.startswith("base_layer."):
            param.copy_(fresh[key])


def initialize_hf_peft(model: nn.Module) -> nn.Module:
    """Re-initialise every tuner layer from the current (pretrained) weights; see :func:`reinitialize_tuner_layer`."""
    for layer in _hf_layers(model).values():
        layer.initialize()
    return model


register_peft_method("HFPeft", HFPeftConfig, apply_hf_peft, initialize_hf_peft)
