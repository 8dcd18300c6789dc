"""A training run's claim on its work dir: no silent overwriting of another run, no two runs at once.

mmengine writes ``iter_N.pth``, ``last_checkpoint`` and the config copy into the work dir without looking at
what is there, so re-running a config with its default work dir replaced the earlier run's checkpoints, and
two runs at once interleaved theirs. :func:`claim_work_dir` (used by tools/train.py):

* refuses a work dir that holds checkpoints unless the run continues them (``--resume``) or replaces them
  (``--overwrite``, which deletes them first);
* holds a lock file (``.soma_train.lock``: process id, host, process start time) for the length of the run; a
  second run is refused while the first lives. A lock left by a killed run (its process gone, or the id reused
  by another process) is recognised as stale and taken over, with a warning.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".soma_train.lock"
CHECKPOINT_NAME = re.compile(r"(iter|epoch)_\d+\.pth|best_.*\.pth|last_checkpoint")


class WorkDirError(UserError, FileExistsError):
    """A work dir that holds another run's checkpoints, or that a running training has locked."""

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0])


def run_files(work_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints (``iter_N.pth``, ``epoch_N.pth``, ``best_*.pth``) and ``last_checkpoint`` of a work dir."""
    work = Path(work_dir)
    if not work.is_dir():
        return []
    return sorted(p for p in work.iterdir() if p.is_file() and CHECKPOINT_NAME.fullmatch(p.name))


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused process id apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(lock: Path) -> dict | None:
    """The lock's owner ``{pid, host, start}``, or ``None`` if the lock is stale (its process is gone)."""
    try:
        owner = json.loads(lock.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or half written: its writer was killed
    if host != socket.gethostname():
        return owner  # cannot look at another machine's processes: assume it runs
    if not _alive(pid):
        return None
    start = owner.get("start")
    if start is not None and _start_time(pid) not in (None, start):
        return None  # the id now belongs to another process
    return owner


def _acquire(lock: Path) -> None:
    from mmengine.logging import print_log

    record = json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), start=_start_time(os.getpid())))
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _holder(lock)
            if owner is not None:
                raise WorkDirError(
                    f"work dir '{lock.parent}' is in use by another training run (process {owner['pid']} on "
                    f"{owner['host']}, lock file {lock}); wait for it or choose another --work-dir. If no such "
                    "run exists any more, delete the lock file.") from None
            print_log(f"taking over the stale lock {lock} of a run that no longer exists.", logger="current",
                      level=logging.WARNING)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return
    raise WorkDirError(f"could not lock work dir '{lock.parent}': another run took {lock} at the same moment.")


def is_main_launch_process() -> bool:
    """Whether this is the process that owns the work dir: the only one, or rank 0 under a launcher."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def claim_work_dir(work_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Iterator[None]:
    """Check and lock ``work_dir`` for one training run; the lock is released when the block ends.

    Args:
        work_dir: the run's work dir (created if missing).
        resume: the run continues the checkpoints in ``work_dir``.
        overwrite: the checkpoints in ``work_dir`` are deleted (after the lock is taken) and the run starts anew.

    Raises:
        WorkDirError: ``work_dir`` holds checkpoints and neither ``resume`` nor ``overwrite`` is set, or another
            run holds its lock.
        UserError: both ``resume`` and ``overwrite``.
    """
    if resume and overwrite:
        raise UserError("--resume continues the run in the work dir and --overwrite deletes it; give one of them.")
    work = Path(work_dir)
    found = run_files(work)
    if found and not (resume or overwrite):
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise WorkDirError(f"work dir '{work}' holds the checkpoints of an earlier run ({names}); continue it with "
                           "--resume, replace it with --overwrite, or choose another --work-dir.")
    work.mkdir(parents=True, exist_ok=True)
    lock = work / LOCK_NAME
    _acquire(lock)
    try:
        if overwrite:
            from mmengine.logging import print_log

            for path in run_files(work):  # listed again under the lock
                path.unlink()
            if found:
                print_log(f"--overwrite: deleted {len(found)} checkpoint file(s) of the earlier run in {work}.",
                          logger="current", level=logging.WARNING)
        yield
    finally:
        lock.unlink(missing_ok=True)
