"""tools/setup.sh, tools/make_wheelhouse.sh and tools/gpu_check.sh: options, refusals, the build decision, and
gpu_check's CPU dry run (every step and the report, at tiny sizes).

The refusals run in scratch virtualenvs that see this environment's packages through a .pth file (as
``--system-torch`` does for a machine's torch), so nothing is installed; the shared .venv is never touched.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET

import pytest

from ..conftest import REPO


def run(args, env=None, **kwargs):
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, **(env or {})), **kwargs)


@pytest.mark.parametrize("script", ["tools/setup.sh", "tools/make_wheelhouse.sh", "tools/gpu_check.sh"])
def test_unknown_option_is_refused_and_help_is_the_header(script):
    refused = run(["bash", script, "--no-such-option"])
    assert refused.returncode != 0 and "unknown option '--no-such-option'" in refused.stderr
    shown = run(["bash", script, "--help"])
    assert shown.returncode == 0 and "bash " + script in shown.stdout


def test_system_torch_needs_an_interpreter_with_torch(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = run(["bash", "tools/setup.sh", "--system-torch"],
                 env=dict(PYTHON=str(bare / "bin/python"), SOMA_VENV=str(tmp_path / "venv")))
    assert result.returncode == 1
    assert "--system-torch: " in result.stderr and "cannot import torch and torchvision" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_wheelhouse_must_exist(tmp_path):
    result = run(["bash", "tools/setup.sh", "--wheelhouse", str(tmp_path / "missing")],
                 env=dict(SOMA_VENV=str(tmp_path / "venv")))
    assert result.returncode == 1 and "is not a directory (make one with tools/make_wheelhouse.sh)" in result.stderr


@pytest.fixture
def venv_seeing_this_environment(tmp_path):
    """A scratch venv whose 'system' packages are this environment's (torch, mmcv, ...), via a .pth file."""
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "this-environment.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
@pytest.mark.parametrize("env, message", [
    (dict(FORCE_CUDA="1", CUDA_HOME="/nonexistent", PATH="/usr/bin:/bin"),
     "nvcc is not found, so mmcv's CUDA ops cannot be built"),
    (dict(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=""), "FORCE_CUDA=1 without a visible GPU: set TORCH_CUDA_ARCH_LIST"),
])
def test_cuda_build_refusals_say_what_to_do(env, message, venv_seeing_this_environment, tmp_path):
    if "PATH" not in env and shutil.which("nvcc") is None:
        pytest.skip("needs nvcc on PATH")
    if "PATH" in env:  # no nvcc, but bash, python and coreutils
        env["PATH"] = f"{venv_seeing_this_environment}/bin:{env['PATH']}"
    result = run(["bash", "tools/setup.sh", "--system-torch"],
                 env=dict(env, PYTHON=str(venv_seeing_this_environment / "bin/python"),
                          SOMA_VENV=str(venv_seeing_this_environment), SOMA_CACHE_DIR=str(tmp_path / "cache"),
                          PIP_NO_INDEX="1"))
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "cache").exists()  # refused before building anything


@pytest.mark.parametrize("cores, decision", [(2, "CPU ops only"), (16, "CPU ops only"), (64, "with CUDA ops")])
def test_gpu_check_builds_cuda_ops_only_where_the_estimate_fits(cores, decision, tmp_path):
    # GNU nproc reports OMP_NUM_THREADS when it is set: the machine's core count as the script sees it.
    result = run(["bash", "tools/gpu_check.sh", str(tmp_path), "--plan"], env=dict(OMP_NUM_THREADS=str(cores)))
    assert result.returncode == 0 and decision in result.stdout, result.stdout + result.stderr
    assert f"on {cores} cores" in result.stdout and "budget 540 s" in result.stdout
    forced = run(["bash", "tools/gpu_check.sh", str(tmp_path), "--plan", "--no-build-mmcv"],
                 env=dict(OMP_NUM_THREADS="64"))
    assert "CPU ops only" in forced.stdout and "chosen on the command line" in forced.stdout


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "out"
    result = run(["bash", "tools/gpu_check.sh", str(out), "--cpu-dry-run"], env=dict(PYTHON=sys.executable))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = (out / "steps.tsv").read_text().splitlines()
    statuses = {line.split("\t")[0]: line.split("\t")[1] for line in steps[1:]}
    assert statuses == {"set-up": "skipped: CPU dry run", "pytest -m gpu": "ok", "train-step benchmark": "ok",
                        "SVD init benchmark": "ok", "total": "ok"}
    cases = list(ET.parse(out / "pytest.xml").getroot().iter("testcase"))
    assert len(cases) >= 7 and all(case.find("skipped") is not None for case in cases)  # no CUDA here
    report = (out / "report.md").read_text()
    for heading in ("## Steps", "## Goals", "## GPU tests", "## Training step", "## SVD initialisation"):
        assert heading in report
    for row in ("| full |", "| lora |", "| soma |", "| plain backbone |", "| SoMA merged |",
                "| svd_method='auto' (the default) |"):
        assert row in report, report
    assert "CPU dry run at tiny sizes" in report and "deformable attention: pure PyTorch" in report
