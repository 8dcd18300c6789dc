"""Adapter methods by name: the types that ``peft=dict(type=...)`` builds (peft's ``PEFT_TYPE_TO_*`` mappings).

A method is a config class (a dataclass with ``from_dict``/``to_dict``), a function that injects it into a model
in place and a function that initialises it once the pretrained weights are loaded. Adding a method is one
:func:`register_peft_method` call next to its code; the backbones never name a method.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

__all__ = ["MethodConfig", "PeftMethod", "PEFT_METHODS", "register_peft_method", "peft_method", "build_peft_config"]


class MethodConfig:
    """Base of the methods' config dataclasses: plain-data round trip with a clear error for unknown options."""

    method_name: ClassVar[str] = "adapter"  # names the method in error messages
    options_hint: ClassVar[str] = ""  # appended to the unknown-option error

    def trained_base_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Tensors of ``model`` outside its adapter layers and modules that this method trains, by state-dict key.

        None by default; read by :func:`soma.peft.model.method_trained_tensors` (freezing, counting, adapter files).
        """
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (JSON-friendly: tuples become lists) for checkpoints and logs."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from a dict (config files, checkpoints): the inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``data`` is not a dict or has keys that are not fields of this class.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.method_name} config must be a dict, got {type(data).__name__}.")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"unknown {cls.method_name} option(s) {unknown}; valid options are {valid}"
                             f"{cls.options_hint}.")
        return cls(**data)


@dataclass(frozen=True)
class PeftMethod:
    """One adapter method.

    Attributes:
        name: the ``type`` that selects it.
        config_class: dataclass with ``from_dict(dict)`` and ``to_dict()``.
        apply: ``apply(model, config, initialize)`` adapts ``model`` in place and returns it; with
            ``initialize=False`` the model's function is unchanged and :attr:`initialize` runs later.
        initialize: ``initialize(model)`` takes the method's initialisation from the model's current (pretrained)
            weights.
    """

    name: str
    config_class: type
    apply: Callable[[nn.Module, Any, bool], nn.Module]
    initialize: Callable[[nn.Module], nn.Module]

    def has_option(self, option: str) -> bool:
        """Whether the method's config has a field ``option``."""
        return is_dataclass(self.config_class) and option in {f.name for f in fields(self.config_class)}


PEFT_METHODS: dict[str, PeftMethod] = {}


def register_peft_method(name: str, config_class: type, apply: Callable[[nn.Module, Any, bool], nn.Module],
                         initialize: Callable[[nn.Module], nn.Module]) -> PeftMethod:
    """Register a method under ``name``; registering a second method under the same name is an error."""
    if name in PEFT_METHODS and PEFT_METHODS[name].config_class is not config_class:
        raise ValueError(f"an adapter method named {name!r} is already registered "
                         f"({PEFT_METHODS[name].config_class.__name__}).")
    method = PeftMethod(name, config_class, apply, initialize)
    PEFT_METHODS[name] = method
    return method


def peft_method(name: str) -> PeftMethod:
    """The method registered as ``name``; the error lists the known ones."""
    if name not in PEFT_METHODS:
        raise ValueError(f"unknown adapter method `peft.type`={name!r}; known methods: {sorted(PEFT_METHODS)}.")
    return PEFT_METHODS[name]


def build_peft_config(cfg: dict[str, Any], defaults: dict[str, Any] | None = None) -> tuple[PeftMethod, Any]:
    """``(method, config)`` from ``dict(type=..., **options)``.

    Args:
        cfg: the ``peft`` dict of a backbone config; ``type`` defaults to ``"SoMA"``.
        defaults: options filled in when ``cfg`` lacks them and the method has them (a backbone's default
            ``target_modules``).
    """
    options = dict(cfg)
    method = peft_method(options.pop("type", "SoMA"))
    for key, value in (defaults or {}).items():
        if method.has_option(key):
            options.setdefault(key, value)
    return method, method.config_class.from_dict(options)
