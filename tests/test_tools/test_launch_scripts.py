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


@pytest.mark.parametrize("script", ["dist_train.sh", "dist_test.sh"])
def test_a_port_in_use_is_refused_with_a_free_one(tmp_path, script):
    """Two distributed jobs on one machine both take port 29500 unless PORT says otherwise: the second is refused
    in one line that names PORT and a free port, before torchrun starts (torchrun's own error is a traceback)."""
    import socket
    import sys

    (tmp_path / "c.py").write_text("")
    (tmp_path / "m.pth").write_bytes(b"")
    args = ["c.py", "2"] if script == "dist_train.sh" else ["c.py", "m.pth", "2"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(["bash", str(REPO / "tools" / script), *(str(tmp_path / a) if "." in a else a
                                                                          for a in args)],
                                capture_output=True, text=True, cwd=REPO,
                                env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "PORT": str(port)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: port {port} (PORT) is in use")
    free = int(result.stderr.split("PORT=")[-1].split()[0])
    with socket.socket() as probe:  # the port it proposes is free
        probe.bind(("", free))
