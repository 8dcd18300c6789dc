"""A work dir holding an earlier run's checkpoints is refused unless --resume/--overwrite; a running training
locks it; a lock left by a killed run is taken over (soma.utils.work_dir, tools/train.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from soma.utils import UserError, WorkDirError, claim_work_dir
from soma.utils.work_dir import LOCK_NAME

from ..conftest import REPO
from ..test_tools.test_train import CONFIG


def test_earlier_checkpoints_are_refused_unless_resume_or_overwrite(tmp_path):
    (tmp_path / "iter_2.pth").write_bytes(b"earlier run")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))
    with pytest.raises(WorkDirError, match=r"holds the checkpoints of an earlier run \(iter_2.pth, last_checkpoint\); "
                                           r"continue it with --resume, replace it with --overwrite"):
        with claim_work_dir(tmp_path):
            pass
    with claim_work_dir(tmp_path, resume=True):
        assert (tmp_path / LOCK_NAME).is_file()
    assert (tmp_path / "iter_2.pth").read_bytes() == b"earlier run" and not (tmp_path / LOCK_NAME).exists()
    with claim_work_dir(tmp_path, overwrite=True):
        assert not (tmp_path / "iter_2.pth").exists() and not (tmp_path / "last_checkpoint").exists()
    with pytest.raises(UserError, match="give one of them"):
        with claim_work_dir(tmp_path, resume=True, overwrite=True):
            pass
    (tmp_path / "20260101_000000").mkdir()  # logs of a run that ended before its first checkpoint: no refusal
    with claim_work_dir(tmp_path):
        pass


def test_a_running_training_locks_its_work_dir(tmp_path):
    with claim_work_dir(tmp_path):
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(WorkDirError, match=rf"in use by another training run \(process {os.getpid()} on"):
            with claim_work_dir(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end, also after an error:
    with pytest.raises(RuntimeError):
        with claim_work_dir(tmp_path):
            raise RuntimeError("training failed")
    assert not (tmp_path / LOCK_NAME).exists()


def test_stale_locks_are_taken_over(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    for record in (dict(pid=dead_pid, host=socket.gethostname(), start=None),  # a killed run
                   dict(pid=os.getpid(), host=socket.gethostname(), start="1"),  # its id reused by another process
                   "half written"):
        (tmp_path / LOCK_NAME).write_text(record if isinstance(record, str) else json.dumps(record))
        with claim_work_dir(tmp_path):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_train_refuses_a_reused_work_dir_before_building_anything(tmp_path, monkeypatch):
    from soma.apis import training as train

    config = tmp_path / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "no_data_needed"))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "iter_4.pth").write_bytes(b"earlier run")
    monkeypatch.setattr(sys, "argv", ["train.py", str(config), "--work-dir", str(tmp_path / "work")])
    with pytest.raises(SystemExit, match=r"^error: work dir '.*work' holds the checkpoints of an earlier run"):
        train.main()
    assert (tmp_path / "work" / "iter_4.pth").read_bytes() == b"earlier run"


def test_test_refuses_to_replace_the_results_of_an_earlier_test(tmp_path, monkeypatch):
    """A second tools/test.py into the same work dir (another checkpoint of the same config) keeps the first
    results: refused before anything is built, naming their checkpoint; --force goes on to the test itself."""
    from soma.apis import testing

    config = tmp_path / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "no_data_needed"))
    work = tmp_path / "work"
    work.mkdir()
    earlier = json.dumps({"mIoU": 41.0, "checkpoint": "run/iter_2.pth"})
    (work / "metrics.json").write_text(earlier)
    (tmp_path / "iter_4.pth").write_bytes(b"not read: the refusal comes first")
    argv = [str(config), str(tmp_path / "iter_4.pth"), "--work-dir", str(work)]
    with pytest.raises(SystemExit, match=r"^error: '.*metrics.json' already holds the results of an earlier test "
                                         r"of checkpoint 'run/iter_2.pth'; .* \(--work-dir DIR\), or pass --force"):
        testing.main(argv)
    assert (work / "metrics.json").read_text() == earlier

    # --force passes the check: the run gets as far as building the runner.
    monkeypatch.setattr(testing, "setup_runtime", lambda **kwargs: None)
    monkeypatch.setattr(testing, "build_runner", lambda cfg: (_ for _ in ()).throw(RuntimeError("reached the build")))
    with pytest.raises(RuntimeError, match="reached the build"):
        testing.main(argv + ["--force"])
