"""Adapter methods by name: the types that ``peft=dict(type=...)`` builds (peft's ``PEFT_TYPE_TO_*`` mappings).

A method is a config class (a dataclass with ``from_dict``/``to_dict``), a function that injects it into a model
in place and a function that initialises it once the pretrained weights are loaded. Adding a method is one
:func:`register_peft_method` call next to its code; the backbones never name a method.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

__all__ = ["is_int", "MethodConfig", "PeftMethod", "PEFT_METHODS", "register_peft_method", "peft_method",
           "build_peft_config", "refuse_unknown_options"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int and not a bool (``r=True`` is a typo, not a rank)."""
    return isinstance(value, int) and not isinstance(value, bool)


def refuse_unknown_options(owner: str, given: Iterable[str], valid: Sequence[str], where: str = "", hint: str = "",
                           error: type[Exception] = ValueError, noun: str = "option") -> None:
    """Raise ``error`` naming the names in ``given`` that are not in ``valid``, each with the closest valid ones.

    The one unknown-option check of the adapter configs and of the config checks (:mod:`soma.config`):
    ``unknown <owner> option(s) [...] at `<where>`; valid options are [...]<hint>; closest to 'x': 'y'.``

    Args:
        owner: what takes the options, e.g. ``"SoMA"`` or ``"DomainIoUMetric"``.
        given: the names given.
        valid: the names ``owner`` takes, in the order they are listed.
        where: the config key holding them (``"test_evaluator"``); omitted if empty.
        hint: appended to the list of valid names.
        error: the exception type (a ``ValueError`` by default).
        noun: what the names are (``"option"``, ``"domain"``).
    """
    valid = list(valid)
    unknown = sorted(set(given) - set(valid))
    if not unknown:
        return
    closest = []
    for name in unknown:
        matches = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
        if matches:
            closest.append(f"closest to {name!r}: {', '.join(repr(m) for m in matches)}")
    at = f" at `{where}`" if where else ""
    raise error(f"unknown {owner} {noun}(s) {unknown}{at}; valid {noun}s are {valid}{hint}"
                + "".join(f"; {c}" for c in closest) + ".")


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
        refuse_unknown_options(cls.method_name, data, [f.name for f in fields(cls)], hint=cls.options_hint)
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
