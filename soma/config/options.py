"""Options that a SoMA metric, hook or dataset does not take (mmseg's metrics drop them silently), refused with the
closest valid names.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


from soma.utils.errors import ConfigError

from .type_names import iter_typed, registered_type_names


# ---------------------------------------------------------------------------------------------- options
# Keys a component's config may hold besides its constructor's arguments (mmengine takes them off first).
_RUNNER_KEYS = {"hook": ("priority",)}


def accepted_options(cls: type) -> tuple[str, ...]:
    """The keyword arguments ``cls(...)`` takes, in signature order: those of its ``__init__`` and, while an
    ``__init__`` takes ``**kwargs``, those of the next ``__init__`` in the MRO (the one it hands them to).

    Assumes that an ``__init__`` with ``**kwargs`` passes them on; one that drops them (mmseg's ``IoUMetric``) must
    not sit in the chain of a class checked with this.
    """
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # without self
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return tuple(names)


@lru_cache(maxsize=1)
def soma_components() -> dict[str, tuple[str, type]]:
    """``name -> (kind, class)`` of the metrics, hooks and datasets SoMA registers (kind: ``"metric"``,
    ``"hook"``, ``"dataset"``)."""
    import mmdet.registry
    import mmengine.registry
    import mmseg.registry

    registered_type_names()  # imports and registers every module
    kinds = {"metric": "METRICS", "hook": "HOOKS", "dataset": "DATASETS"}
    components: dict[str, tuple[str, type]] = {}
    for kind, attribute in kinds.items():
        for module in (mmseg.registry, mmdet.registry, mmengine.registry):
            for name, cls in getattr(module, attribute).module_dict.items():
                if cls.__module__.partition(".")[0] == "soma":
                    components.setdefault(name, (kind, cls))
    return components


def check_component_options(cfg: Any) -> None:
    """Refuse options that a SoMA metric, hook or dataset does not take, naming the closest valid ones.

    Options of the parent classes the component hands its ``**kwargs`` to count (``data_root``, ``pipeline``,
    ... of the datasets). Without this check an unknown option is dropped without a word (mmseg's ``IoUMetric``
    takes ``**kwargs``) or fails only when the component is built, after the model.

    Args:
        cfg: an mmengine ``Config`` (or any nested mapping); every ``type=`` under it is looked at.

    Raises:
        ConfigError: a component's config has a key its class does not take.
    """
    from soma.peft.registry import refuse_unknown_options

    if not isinstance(cfg, Mapping) and hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    components = soma_components()
    for where, node in iter_typed(cfg, ""):
        kind = node["type"]
        name = kind.rpartition(".")[2] if isinstance(kind, str) else kind.__name__
        if name not in components or (isinstance(kind, type) and kind is not components[name][1]):
            continue
        component_kind, cls = components[name]
        valid = accepted_options(cls) + _RUNNER_KEYS.get(component_kind, ())
        given = [key for key in node if key not in ("type", "_scope_", "_delete_")]  # the latter two: mmengine's
        refuse_unknown_options(name, given, valid, where=where or "the config", error=ConfigError)
