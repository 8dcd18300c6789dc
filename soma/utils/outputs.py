"""Outputs never replace inputs: the checks every tool that writes files runs before it starts.

Writes themselves go through :func:`soma.utils.atomic_path` (a temporary name, renamed at the end), so a
killed tool never leaves half a file; these checks make sure the final name is not one of the tool's inputs
and does not replace an earlier result unless the user asked for it (``--force``).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputExistsError, UserError


def check_writable_dir(folder: str | os.PathLike, option: str) -> None:
    """Refuse a folder the tool could not write its outputs into, before any work is done.

    A folder without write permission (or on a read-only disk) would otherwise be found only when the first file
    is written: after the model is built, or after a whole training run's first interval. The nearest existing
    folder on the path (``folder`` itself, or the parent it will be created in) is tried with a temporary file.

    Args:
        folder: the output folder (need not exist yet).
        option: how the user gave it, for the message (``--work-dir``, ``--out``, ...).

    Raises:
        UserError: a file lies where the folder should be, or nothing can be written there.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} '{folder}': '{existing}' is a file, not a folder; give another {option}.")
    try:
        handle, probe = tempfile.mkstemp(prefix=".soma_write_check.", dir=existing)
    except OSError as exc:
        where = "" if existing == folder else f" (it would be created in '{existing}')"
        raise UserError(f"cannot write to {option} '{folder}'{where}: {exc.strerror or exc}; give a folder you can "
                        f"write to with {option}, or change its permissions.") from None
    os.close(handle)
    os.unlink(probe)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], force: bool = False) -> None:
    """Refuse an output file that is one of ``inputs``, or that exists unless ``force``, or whose folder cannot be
    written to.

    Raises:
        OutputExistsError: with the paths and what to do.
        UserError: the output's folder cannot be written to (:func:`check_writable_dir`).
    """
    out = Path(out)
    check_writable_dir(out.parent, "the output's folder")
    for source in map(Path, inputs):
        if out.resolve() == source.resolve() or _same(out, source):
            raise OutputExistsError(f"the output '{out}' is the input '{source}': writing it would destroy the "
                                    "input; give another output file.")
    if out.is_dir():
        raise OutputExistsError(f"the output '{out}' is a folder; give a file name.")
    if out.exists() and not force:
        raise OutputExistsError(f"the output '{out}' exists; pass --force to replace it, or give another name.")


def check_output_dir(out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike], produced: Iterable[str],
                     force: bool = False) -> None:
    """Refuse an output folder that is or lies inside an input folder, or is an input file, or that already
    holds this tool's outputs (``produced``: names of its files or sub-folders) unless ``force``, or that cannot
    be written to.

    Raises:
        OutputExistsError: with the paths and what to do.
        UserError: the folder cannot be written to (:func:`check_writable_dir`).
    """
    out = Path(out_dir).resolve()
    for source in map(Path, inputs):
        resolved = source.resolve()
        if out == resolved or (source.is_dir() and resolved in out.parents):
            raise OutputExistsError(f"the output folder '{out_dir}' is or lies inside the input '{source}': the "
                                    "outputs would mix with (and be read back as) inputs; give another --out.")
    existing = [name for name in produced if (out / name).exists()]
    check_writable_dir(out_dir, "the output folder")
    if existing and not force:
        raise OutputExistsError(f"the output folder '{out_dir}' already holds {', '.join(existing)} of an earlier "
                                "run; pass --force to replace them, or give another --out.")
