"""Every ``type`` of a config checked against the registries before anything is built: mmengine reports an unknown
type as a bare ``KeyError`` deep inside the Runner, after minutes of dataset indexing; here the whole config is
walked first and the key path and the closest registered names are given (adapter methods: soma.peft's registry).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from mmengine.registry import Registry

from soma.utils.errors import UserError


_SCOPES = ("mmengine", "mmseg", "mmdet")


class UnknownTypeError(UserError, KeyError):
    """A config names a ``type`` that no registry knows."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def _registries(module: Any) -> Iterator[Registry]:
    for value in vars(module).values():
        if isinstance(value, Registry):
            yield value


@lru_cache(maxsize=1)
def registered_type_names() -> dict[str, frozenset[str]]:
    """Names registered per scope (``mmengine``, ``mmseg``, ``mmdet``), after importing all their modules."""
    import mmdet.registry
    import mmengine.registry
    import mmseg.registry
    from mmdet.utils import register_all_modules as register_det
    from mmseg.utils import register_all_modules as register_seg

    from soma import register_all_modules

    register_all_modules()

    register_seg(init_default_scope=False)
    register_det(init_default_scope=False)
    import mmdet.visualization  # noqa: F401  (not imported by register_all_modules)
    import mmseg.visualization  # noqa: F401
    names: dict[str, frozenset[str]] = {}
    for scope, module in zip(_SCOPES, (mmengine.registry, mmseg.registry, mmdet.registry)):
        names[scope] = frozenset(n for reg in _registries(module) for n in reg.module_dict)
    return names


def iter_typed(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(key path, mapping)`` of every mapping with a ``type`` under ``node``, outer ones first."""
    if isinstance(node, Mapping):
        if isinstance(node.get("type"), (str, type)):
            yield path, node
        for key, value in node.items():
            yield from iter_typed(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from iter_typed(value, f"{path}[{index}]")


def _iter_types(node: Any, path: str) -> Iterator[tuple[str, str]]:
    for where, typed in iter_typed(node, path):
        if isinstance(typed["type"], str):
            yield f"{where}.type" if where else "type", typed["type"]


def _is_mmcv_op(key_path: str, type_name: str) -> bool:
    """``nms=dict(type="soft_nms")`` and ``roi_layer=dict(type="RoIAlign")`` name ``mmcv.ops`` members, not registry
    entries (mmcv's ``batched_nms`` and mmdet's RoI extractors look them up there)."""
    if not key_path.endswith(("nms.type", "roi_layer.type")):
        return False
    import mmcv.ops

    return hasattr(mmcv.ops, type_name)


def _check_peft_type(key_path: str, type_name: str) -> None:
    from soma.peft import PEFT_METHODS

    if type_name not in PEFT_METHODS:
        close = difflib.get_close_matches(type_name, sorted(PEFT_METHODS), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTypeError(f"unknown adapter method '{type_name}' at `{key_path}`; soma.peft knows "
                               f"{sorted(PEFT_METHODS)}.{hint}")


def check_config_types(cfg: Any) -> None:
    """Raise :class:`UnknownTypeError` for the first ``type`` name no registry knows.

    A name ``"scope.Name"`` is looked up in that scope; a plain name in any of mmengine, mmseg, mmdet (their
    registries fall back to mmengine's, and our modules are registered in mmseg's and mmdet's).

    Args:
        cfg: an mmengine ``Config`` (or any nested mapping).
    """
    if not isinstance(cfg, Mapping) and hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()  # mmengine.Config wraps its ConfigDict
    names = registered_type_names()
    known_anywhere = frozenset().union(*names.values())
    for key_path, type_name in _iter_types(cfg, ""):
        if _is_mmcv_op(key_path, type_name):
            continue
        if key_path == "peft.type" or key_path.endswith(".peft.type"):
            _check_peft_type(key_path, type_name)  # an adapter method: soma.peft's registry, not OpenMMLab's
            continue
        if ".peft." in f".{key_path}":
            continue  # inside an adapter method's options: its own class names (HFPeft: peft's LoraConfig, ...)
        scope, _, bare = type_name.rpartition(".")
        candidates = names.get(scope, frozenset()) | names["mmengine"] if scope else known_anywhere
        if scope and scope not in names:
            continue  # a dotted import path or a scope we do not index; leave it to mmengine
        if bare in candidates:
            continue
        close = difflib.get_close_matches(bare, sorted(candidates), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTypeError(
            f"unknown type '{type_name}' at `{key_path}`: it is not registered in "
            f"{scope or 'mmengine, mmseg or mmdet'}.{hint} SoMA's own types are registered by "
            "`custom_imports` in the config (see soma.OPENMMLAB_PACKAGES)."
        )
