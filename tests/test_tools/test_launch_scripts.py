"""tools/test.sh, dist_test.sh, dist_train.sh: argument errors give a usage line and exit 2 before Python starts
(they gave `$1: unbound variable`, or took an option for the GPU count)."""
from __future__ import annotations

import subprocess

import pytest

from ..conftest import REPO


def run(script, *args):
    return subprocess.run(["bash", str(REPO / "tools" / script), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/false"})


@pytest.mark.parametrize("script, args, error", [
    ("test.sh", [], "CONFIG and CHECKPOINT are required"),
    ("test.sh", ["CONFIG"], "CONFIG and CHECKPOINT are required"),
    ("test.sh", ["{config}", "{checkpoint}", "two"], "GPUS must be a positive integer, got 'two'"),
    ("test.sh", ["{config}", "{checkpoint}", "0"], "GPUS must be a positive integer, got '0'"),
    ("test.sh", ["{config}", "missing.pth"], "checkpoint 'missing.pth' does not exist"),
    ("dist_test.sh", ["{config}", "{checkpoint}"], "CONFIG, CHECKPOINT and GPUS are required"),
    ("dist_test.sh", ["{config}", "{checkpoint}", "--work-dir", "w"], "CONFIG, CHECKPOINT and GPUS are required"),
    ("dist_test.sh", ["{config}", "{checkpoint}", "1.5"], "must be a positive integer, got '1.5'"),
    ("dist_train.sh", ["{config}"], "CONFIG and GPUS are required"),
    ("dist_train.sh", ["{config}", "-1"], "CONFIG and GPUS are required"),
    ("dist_train.sh", ["{config}", "x"], "must be a positive integer, got 'x'"),
])
def test_argument_errors_print_usage(tmp_path, script, args, error):
    (tmp_path / "c.py").write_text("")
    (tmp_path / "m.pth").write_bytes(b"")
    result = run(script, *(a.format(config=tmp_path / "c.py", checkpoint=tmp_path / "m.pth") for a in args))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: bash tools/") and lines[-1].startswith("error: "), result.stderr
    assert lines[-1].endswith(error), result.stderr


def test_options_may_follow_the_checkpoint_directly(tmp_path):
    """`test.sh CFG CKPT --work-dir D` runs 1 process with the options (PYTHON=/bin/false stands in for test.py)."""
    (tmp_path / "c.py").write_text("")
    (tmp_path / "m.pth").write_bytes(b"")
    result = run("test.sh", tmp_path / "c.py", tmp_path / "m.pth", "--work-dir", tmp_path / "w")
    assert result.returncode == 1 and "usage" not in result.stderr  # reached the interpreter: /bin/false
