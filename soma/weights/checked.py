"""Loading a checkpoint into a model only if every tensor fits (or, non-strict, logging what does not).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch.nn as nn


from .causes import likely_causes
from .config_diff import config_changes
from .mismatch import (NON_STRICT_HINT, CheckpointMismatchError, StateDictMismatch, checkpoint_state_dict,
                       compare_state_dict, unwrap_model)


# ---------------------------------------------------------------------------------------------- checking
def describe_mismatch(model: nn.Module, checkpoint: Any, source: str | os.PathLike, mismatch: StateDictMismatch,
                      model_config: Mapping[str, Any] | None = None, resuming: bool = False,
                      strict: bool = True) -> str:
    """The full message for a checkpoint that does not fit: what, how many, why, what to do (``strict``) or
    what was loaded (not ``strict``)."""
    state = checkpoint_state_dict(checkpoint)
    causes = likely_causes(model, checkpoint, state, mismatch)
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    changes = config_changes(meta.get("cfg") if isinstance(meta, Mapping) else None, model_config)
    if not strict:
        text = (f"--non-strict: checkpoint '{source}' does not fit the config's model; loading the "
                f"{mismatch.loaded} of {mismatch.total} tensors that fit. NOT loaded (left at their initial "
                f"values): {mismatch.summary()}.")
        return text + (" Likely cause: " + "; ".join(causes) + "." if causes else "")
    head = (f"--resume: the config no longer fits the checkpoint '{source}'" if resuming
            else f"checkpoint '{source}' does not fit the config's model")
    text = f"{head}: of {mismatch.total} tensors, {mismatch.summary()}."
    if changes:
        text += (f" Model settings changed since the checkpoint was written: {'; '.join(changes[:6])}"
                 f"{'; ...' if len(changes) > 6 else ''}.")
    if causes:
        text += " Likely cause: " + "; ".join(causes) + "."
    if resuming:
        text += " Resume with the config the checkpoint was trained with, or start a new run (another --work-dir)."
    return f"{text} {NON_STRICT_HINT}"


def check_checkpoint_fits(model: nn.Module, checkpoint: Any, source: str | os.PathLike, strict: bool = True,
                          model_config: Mapping[str, Any] | None = None, resuming: bool = False) -> StateDictMismatch:
    """Refuse (``strict``) or log (not ``strict``) a checkpoint whose tensors do not fit ``model``.

    Args:
        model: the model (wrappers are removed with :func:`unwrap_model`).
        checkpoint: the loaded checkpoint (a Runner checkpoint, a ``{"state_dict": ...}`` file or a state dict).
        source: the file name, for the message.
        strict: raise on any mismatch; ``False`` logs it as a warning (the tools' ``--non-strict``).
        model_config: the config's ``model`` dict, compared with the checkpoint's training config.
        resuming: word the message for ``--resume``.

    Returns:
        The mismatch (empty when everything fits).

    Raises:
        CheckpointMismatchError: ``strict`` and some tensor is missing, unexpected or of another shape.
    """
    from mmengine.logging import print_log

    model = unwrap_model(model)
    mismatch = compare_state_dict(model, checkpoint_state_dict(checkpoint))
    if not mismatch:
        return mismatch
    message = describe_mismatch(model, checkpoint, source, mismatch, model_config, resuming, strict)
    if strict:
        raise CheckpointMismatchError(message)
    print_log(message, logger="current", level=logging.WARNING)
    return mismatch


def load_state_dict_checked(model: nn.Module, checkpoint: Any, source: str | os.PathLike,
                            strict: bool = True) -> None:
    """Check ``checkpoint`` against ``model`` (:func:`check_checkpoint_fits`), then load what fits."""
    model = unwrap_model(model)
    mismatch = check_checkpoint_fits(model, checkpoint, source, strict=strict)
    state = checkpoint_state_dict(checkpoint)
    skipped = {name for name, _, _ in mismatch.wrong_shape}
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)


def load_checkpoint_checked(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint file written by this codebase into ``model`` strictly; returns the checkpoint."""
    from soma.utils.checkpoint import load_trusted_checkpoint

    checkpoint = load_trusted_checkpoint(path)
    load_state_dict_checked(model, checkpoint, path, strict=strict)
    return checkpoint
