"""The model settings that changed since a Runner checkpoint was trained (mmengine stores its config as
``meta.cfg``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any





def config_changes(saved_config: str | None, model_config: Mapping[str, Any] | None) -> list[str]:
    """``key: saved → current`` for the model settings that differ from the config a Runner checkpoint was
    trained with (mmengine stores it as ``meta.cfg``); empty if either is unknown."""
    if not saved_config or model_config is None:
        return []
    from mmengine.config import Config

    try:
        saved = Config.fromstring(saved_config, ".py").get("model")
    except Exception:  # a config text mmengine cannot parse back (e.g. holding objects): nothing to compare
        return []
    changes: list[str] = []

    def walk(old: Any, new: Any, path: str) -> None:
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for key in sorted(set(old) | set(new), key=str):
                walk(old.get(key), new.get(key), f"{path}.{key}")
        elif old != new and not (isinstance(old, (list, tuple)) and isinstance(new, (list, tuple))
                                 and list(old) == list(new)):
            changes.append(f"{path}: {old!r} → {new!r}")

    walk(saved, model_config, "model")
    return [c for c in changes if "init_cfg" not in c and "data_preprocessor" not in c]
