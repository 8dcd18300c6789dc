"""The loop settings (``train_cfg``, ``val_cfg``, ``test_cfg``) checked before anything is built.

mmengine passes them as keyword arguments to its loop classes, so a misspelt key (``train_cfg.max_iter=1``)
ends, after the model and datasets are built, in ``TypeError: __init__() got an unexpected keyword argument``
naming neither the config key nor the right spelling, and a ``train_cfg`` without ``type`` or ``by_epoch`` in a
bare ``KeyError: 'by_epoch'``.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from soma.utils.errors import ConfigError

# Arguments the Runner passes to the loops itself.
_RUNNER_ARGUMENTS = {"self", "runner", "dataloader", "evaluator"}


def _loop_class(key: str, loop: Mapping[str, Any]) -> type | None:
    """The loop class mmengine's Runner builds for ``cfg[key]`` (mmengine's ``build_*_loop``), or ``None``."""
    from mmengine.registry import LOOPS
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop

    kind = loop.get("type")
    if key == "train_cfg" and kind is not None and "by_epoch" in loop:
        raise ConfigError(f"`train_cfg` has both `type` ({kind!r}) and `by_epoch`, and mmengine takes one of them: "
                          "drop `by_epoch` (the loop type decides it).")
    if isinstance(kind, type):
        return kind
    if isinstance(kind, str):
        return LOOPS.get(kind)  # None for an unknown name, which check_config_types reports
    if key == "train_cfg":
        if "by_epoch" not in loop:
            raise ConfigError("`train_cfg` needs `type` (e.g. 'IterBasedTrainLoop') or `by_epoch` (True: "
                              "EpochBasedTrainLoop, False: IterBasedTrainLoop); it has neither.")
        return EpochBasedTrainLoop if loop["by_epoch"] else IterBasedTrainLoop
    return ValLoop if key == "val_cfg" else TestLoop


def check_loop_options(cfg: Mapping[str, Any]) -> None:
    """Refuse loop options the loop class does not take, naming the closest valid ones.

    Raises:
        ConfigError: an unknown key in ``train_cfg``/``val_cfg``/``test_cfg``, or a ``train_cfg`` with both or
            neither of ``type`` and ``by_epoch``.
    """
    for key in ("train_cfg", "val_cfg", "test_cfg"):
        loop = cfg.get(key)
        if not isinstance(loop, Mapping) or not loop:
            continue
        cls = _loop_class(key, loop)
        if cls is None:
            continue
        parameters = inspect.signature(cls.__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue  # takes any option
        valid = sorted(set(parameters) - _RUNNER_ARGUMENTS)
        implicit = {"type"} | ({"by_epoch"} if key == "train_cfg" and "type" not in loop else set())
        for option in sorted(set(loop) - set(valid) - implicit):
            close = difflib.get_close_matches(option, valid, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"`{key}.{option}` is no option of {cls.__name__}, which takes {valid}.{hint}")
