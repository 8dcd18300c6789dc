"""``torchrun`` for tools/dist_train.sh and tools/dist_test.sh, ending a failed job in one line.

Plain ``torchrun`` answers a worker that stopped on a user error (which the worker has already explained in one
line) with its own 40-line ``ChildFailedError`` traceback, so the last thing a user reads says nothing about what to
change. This runs the same launcher and replaces that traceback with a summary naming the failed processes.

    python -m soma.utils.distributed_launch [torchrun options] SCRIPT [script args]
"""
from __future__ import annotations

import signal
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def describe_exit(exitcode: int) -> str:
    """``exit code 1``, or for a worker killed by a signal its name (the kernel's OOM killer sends SIGKILL)."""
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    hint = ", e.g. by the out-of-memory killer: lower the batch size or the number of processes" \
        if name == "SIGKILL" else ""
    return f"killed by {name}{hint}"


def failure_summary(error: ChildFailedError) -> str:
    """One line: which script failed in how many processes, and where to look for the cause."""
    rank, first = error.get_first_failure()
    count = len(error.failures)
    processes = f"{count} processes" if count > 1 else "1 process"
    return (f"error: {error.name} failed in {processes} (first: rank {rank}, {describe_exit(first.exitcode)}); "
            f"the cause is in that process's output above")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ChildFailedError as error:
        print(failure_summary(error), file=sys.stderr)
        first = error.get_first_failure()[1].exitcode
        return first if first > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
