"""Loading and saving weight files: the one place that decides how ``torch.load`` is called.

torch >= 2.6 unpickles with ``weights_only=True`` by default. That is right for foreign weight files
(DINOv2/EVA02 releases, converted checkpoints), and wrong for the checkpoints mmengine's Runner writes: they
hold a ``MessageHub`` with ``HistoryBuffer`` objects and numpy scalars, so every ``load_from``/``--resume``
fails. The policy here:

* :func:`load_weights` — pretrained/foreign files. Never executes pickled code (``weights_only=True``);
  ``.safetensors`` is read with safetensors. Our backbones load ``init_cfg=Pretrained`` through it.
* :func:`load_trusted_checkpoint` — checkpoints this codebase (mmengine's Runner) wrote and the user named
  (``load_from``, ``--resume``, a test checkpoint). Full unpickling.
* :func:`register_local_checkpoint_loader` — mmengine's local-file checkpoint loader (``load_from``,
  ``resume``, ``init_cfg=Pretrained``, ...) unpickles fully only the files given to :func:`trust_checkpoint`
  and loads every other file with :func:`load_weights`.
* :func:`register_atomic_local_backend` — mmengine's local file writes (checkpoints) go through a temp file.

Importing ``soma`` changes none of mmengine's behaviour: the two ``register_*`` functions run only through
:func:`soma.utils.runtime.setup_runtime`, which tools/train.py and tools/test.py call.
"""
from __future__ import annotations

import contextlib
import functools
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

CHECKPOINT_HELP = "see checkpoints/README.md for where pretrained files go and how to convert them"


class CheckpointReadError(UserError, RuntimeError):
    """A checkpoint file that cannot be read: truncated, not a torch file, or the wrong file given."""


CONFIG_SUFFIXES = (".py", ".json", ".yaml", ".yml")


def unreadable_checkpoint_message(path: str | os.PathLike, detail: BaseException) -> str:
    """Why ``path`` could not be read as a checkpoint, naming the likely mix-up: a config given as the checkpoint,
    or mmengine's ``last_checkpoint`` text file (which names the checkpoint), else a truncated or foreign file."""
    path = Path(path)
    head = f"cannot read checkpoint '{path}'"
    if path.suffix in CONFIG_SUFFIXES:
        return (f"{head}: it is a config file. Were CONFIG and CHECKPOINT swapped? The config comes first "
                "(e.g. tools/test.py CONFIG CHECKPOINT).")
    try:
        text = path.read_text(encoding="utf-8").strip() if path.stat().st_size < 4096 else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    if text and "\n" not in text and Path(text).is_file():
        return (f"{head}: it is a text file naming the checkpoint '{text}' (mmengine's `last_checkpoint`); give "
                "that file instead.")
    return f"{head} (truncated or not a torch file?): {str(detail).splitlines()[0] if str(detail) else detail!r}"


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file '{path}' does not exist; {CHECKPOINT_HELP}.")
    return path


def load_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a foreign weight file safely (no pickled code runs).

    Args:
        path: a ``.pth``/``.pt``/``.bin`` torch file or a ``.safetensors`` file.
        map_location: device to map tensors to.

    Returns:
        The loaded object (usually a state dict, possibly nested under ``"state_dict"``/``"model"``).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointReadError: the file is corrupted or holds Python objects other than tensors and containers
            (a ``RuntimeError`` and a user error).
    """
    path = _check_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except Exception as exc:
            raise RuntimeError(f"cannot read safetensors file '{path}': {exc}") from exc
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointReadError(
            f"'{path}' holds Python objects besides tensors, so it is not loaded as a pretrained weight file. "
            "If it is a checkpoint written by this codebase's training, use it as `load_from`/`--resume` "
            f"(loaded with soma.utils.load_trusted_checkpoint). Detail: {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on other files (IndexError on short text files)
        raise CheckpointReadError(unreadable_checkpoint_message(path, exc)) from exc


def load_trusted_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint written by this codebase (full unpickling: only for files you trust).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointReadError: the file is truncated or not a torch checkpoint (a config, mmengine's
            ``last_checkpoint`` text file, ...); a ``RuntimeError`` and a user error.
    """
    path = _check_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # as load_weights
        raise CheckpointReadError(unreadable_checkpoint_message(path, exc)) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; renamed onto ``path`` only if the block succeeds.

    A killed or failing writer therefore never leaves a half-written file under the final name. The temporary
    name keeps ``path``'s suffix, so writers that pick the format from it (OpenCV, matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates owner-only files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename: a kill never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file (JSON results, stamps) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


_trusted_paths: set[str] = set()


def _resolved(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def trust_checkpoint(path: str | os.PathLike) -> None:
    """Allow full unpickling of this one local file (the ``load_from``/``--resume``/test checkpoint the user
    named) when mmengine loads it through :func:`load_local_checkpoint`. Links and relative paths resolve to
    the same file."""
    _trusted_paths.add(_resolved(path))


def is_trusted_checkpoint(path: str | os.PathLike) -> bool:
    """Whether :func:`trust_checkpoint` was called for ``path`` (after resolving links and relative paths)."""
    return _resolved(path) in _trusted_paths


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader of local checkpoint files: full unpickling for a trusted file, else ``weights_only``.

    Raises:
        FileNotFoundError: the file does not exist.
        RuntimeError: an untrusted file holds pickled Python objects (the message says how to use it), or the
            file is truncated.
    """
    if is_trusted_checkpoint(filename):
        return load_trusted_checkpoint(filename, map_location=map_location or "cpu")
    return load_weights(filename, map_location=map_location or "cpu")


def register_local_checkpoint_loader() -> None:
    """Route mmengine's local checkpoint loading through :func:`load_local_checkpoint`; idempotent."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_local_checkpoint, force=True)


def register_atomic_local_backend() -> None:
    """Make mmengine's local file writes atomic: checkpoints (and anything else written through its ``put``).

    mmengine's Runner serialises a checkpoint to memory and writes it with ``LocalBackend.put``, which opens the
    final file directly: a job killed while writing a ViT-L checkpoint leaves a truncated ``iter_N.pth`` that
    ``--resume`` then fails on. Writing to a temporary file and renaming keeps the previous checkpoint intact.
    Idempotent.
    """
    from mmengine.fileio import LocalBackend, register_backend
    from mmengine.fileio import io as mmengine_io

    atomic_backend = _atomic_local_backend()
    register_backend("local", atomic_backend, force=True, prefixes="")
    # mmengine caches backend instances: one made before this call would keep writing in place.
    for key, backend in list(mmengine_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mmengine_io.backend_instances[key]


@functools.lru_cache(maxsize=1)
def _atomic_local_backend() -> type:
    """mmengine's ``LocalBackend`` whose ``put``/``put_text`` write to a temporary file and rename."""
    from mmengine.fileio import LocalBackend

    class AtomicLocalBackend(LocalBackend):
        def put(self, obj: bytes, filepath: str | os.PathLike) -> None:
            with atomic_path(filepath) as tmp:
                tmp.write_bytes(obj)

        def put_text(self, obj: str, filepath: str | os.PathLike, encoding: str = "utf-8") -> None:
            with atomic_path(filepath) as tmp:
                tmp.write_text(obj, encoding=encoding)

    return AtomicLocalBackend
