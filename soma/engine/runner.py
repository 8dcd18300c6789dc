"""mmengine's Runner with strict ``load_from``/``--resume`` loading (see :mod:`soma.weights`).

Build it after :func:`soma.utils.runtime.setup_runtime` (atomic checkpoint writes, mmcv op settings, and
``weights_only`` loading of every file but the one the run loads), as tools/train.py and tools/test.py do.
"""
from __future__ import annotations

import os
from typing import Any

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from soma.utils.checkpoint import load_trusted_checkpoint
from soma.weights import check_checkpoint_fits

__all__ = ["SoMARunner", "build_runner"]


@RUNNERS.register_module()
class SoMARunner(Runner):
    """A ``Runner`` that refuses a ``load_from``/``--resume`` checkpoint that does not fit the model.

    mmengine loads these with ``strict=False`` and only logs what was skipped, so a checkpoint of another
    architecture, rank or class count would be evaluated or trained on as a partly random model. Here any
    missing, unexpected or wrongly shaped tensor is refused with the likely cause named (another rank, class
    count, backbone; an adapter-only or merged file; on ``--resume``, the model settings changed since the
    checkpoint). The config key ``strict_loading = False`` (the tools' ``--non-strict``) loads what fits and
    logs the rest. ``_base_/default_runtime.py`` names it as ``runner_type``.

    The checkpoint the run was asked to load (``load_from``; on ``--resume`` without one, the latest checkpoint
    of the work dir) is a file this codebase wrote and the user named, so it is unpickled fully (mmengine's
    ``MessageHub`` and numpy scalars); any other file loaded here goes through mmengine's loaders.

    ``loaded_meta`` keeps the ``meta`` of the last checkpoint loaded (mmengine's: the training run's ``seed`` and
    config text ``cfg``), so that tools/test.py can record which training run its metrics are of.
    """

    loaded_meta: dict | None = None

    def load_checkpoint(self, filename: str, map_location: Any = "cpu", strict: bool = False,
                        revise_keys: list = [(r"^module.", "")]) -> dict:  # noqa: B006 (mmengine's signature)
        if self._names_load_target(filename):
            checkpoint = load_trusted_checkpoint(filename, map_location=map_location)
        else:
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.loaded_meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)  # e.g. EMA weights swapped in, as mmengine
        model = self.model.module if is_model_wrapper(self.model) else self.model
        model_config = self.cfg.get("model") or {}
        model_config = model_config.get("module", model_config)  # the model inside a TTA wrapper
        check_checkpoint_fits(model, checkpoint, filename, strict=self.cfg.get("strict_loading", True),
                              model_config=model_config, resuming=self._resume)
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict=False, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint

    def _names_load_target(self, filename: str) -> bool:
        """Whether ``filename`` is the local file ``load_from``/``--resume`` names (mmengine's automatic resume
        picks the work dir's latest checkpoint when ``load_from`` is unset)."""
        if "://" in os.fspath(filename):
            return False
        if self._load_from is not None:
            return os.path.realpath(filename) == os.path.realpath(self._load_from)
        return bool(self._resume)


def build_runner(cfg: Config) -> Runner:
    """The runner the config names in ``runner_type`` (``_base_/default_runtime.py``: :class:`SoMARunner`), else
    mmengine's ``Runner``, as mmseg's and mmdet's tools build it: a config runs the same through tools/train.py,
    ``mim train`` or its own script."""
    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
