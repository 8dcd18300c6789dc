"""The one-line summary tools/torchrun.sh prints in place of torchrun's ChildFailedError traceback."""
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from soma.utils.distributed_launch import describe_exit, failure_summary


def failure(rank: int, exitcode: int) -> ProcessFailure:
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file="<N/A>")


def test_exit_codes_and_signals_are_named():
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(-9).startswith("killed by SIGKILL, e.g. by the out-of-memory killer")


def test_the_summary_names_the_script_the_count_and_the_first_failure():
    first, later = failure(1, -9), failure(0, 1)
    later.timestamp = first.timestamp + 5
    line = failure_summary(ChildFailedError("tools/train.py", {0: later, 1: first}))
    assert line.startswith("error: tools/train.py failed in 2 processes (first: rank 1, killed by SIGKILL")
    assert "\n" not in line
    single = failure_summary(ChildFailedError("tools/test.py", {0: failure(0, 2)}))
    assert single.startswith("error: tools/test.py failed in 1 process (first: rank 0, exit code 2)")
