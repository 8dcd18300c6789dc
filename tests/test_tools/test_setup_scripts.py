"""tools/setup.sh, tools/make_wheelhouse.sh, tools/build_mmcv_wheel.sh and tools/gpu_check.sh: options, refusals,
the prebuilt-wheel match, the steps sized to the budget, and gpu_check's CPU dry run (every step and the report).

The refusals run in scratch virtualenvs that see this environment's packages through a .pth file (as
``--system-torch`` does for a machine's torch), so nothing is installed; the shared .venv is never touched.
"""
import json
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


@pytest.mark.parametrize("script", ["tools/setup.sh", "tools/make_wheelhouse.sh", "tools/gpu_check.sh",
                                    "tools/build_mmcv_wheel.sh"])
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
        # As a site folder, so that its own .pth files run (where this environment's torch is itself added by one).
        handle.write(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return venv


@pytest.mark.slow
@pytest.mark.parametrize("env, message", [
    (dict(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST="9.0", CUDA_HOME="/nonexistent", PATH="/usr/bin:/bin"),
     "no prebuilt mmcv wheel matches (mmcv-2.1.0-torch"),
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


def test_gpu_check_sizes_the_steps_to_the_budget_and_still_reports(tmp_path):
    """With no time left every measuring step is skipped (named, with what it needed), and the report is written."""
    out = tmp_path / "out"
    result = run(["bash", "tools/gpu_check.sh", str(out), "--cpu-dry-run", "--budget", "1"],
                 env=dict(PYTHON=sys.executable))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    steps = (out / "steps.tsv").read_text().splitlines()
    statuses = {line.split("\t")[0]: line.split("\t")[1] for line in steps[1:]}
    assert statuses == {"set-up": "skipped: CPU dry run", "pytest -m gpu": "skipped: out of time",
                        "train-step benchmark": "skipped: out of time", "SVD init benchmark": "skipped: out of time",
                        "demo training run": "skipped: out of time", "7B training step": "skipped: out of time",
                        "7B SVD init": "skipped: out of time", "total": "incomplete"}
    report = (out / "report.md").read_text()
    assert "train_step.json is missing" in report and "demo/soma_ema/metrics.json is missing" in report
    assert (out / "report.json").exists()


def fake_mmcv_build(wheelhouse, key: str, **info) -> None:
    """A prebuilt-wheel folder as tools/build_mmcv_wheel.sh writes it (the wheel itself is never installed here)."""
    folder = wheelhouse / "mmcv" / key
    folder.mkdir(parents=True)
    (folder / "mmcv-2.1.0-cp312-cp312-linux_x86_64.whl").write_bytes(b"not installed by this test")
    (folder / "BUILD.txt").write_text("".join(f"{k}={v}\n" for k, v in dict(key=key, **info).items()))


@pytest.mark.slow
def test_prebuilt_mmcv_mismatches_are_named_and_no_build_refuses(venv_seeing_this_environment, tmp_path):
    import torch

    version = torch.__version__.split("+")[0]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheelhouse = tmp_path / "wheelhouse"
    fake_mmcv_build(wheelhouse, "other-python", python="3.9", torch=version, cuda="none", archs="none")
    fake_mmcv_build(wheelhouse, "other-torch", python=f"{sys.version_info.major}.{sys.version_info.minor}",
                    torch="2.0.0", cuda="none", archs="none")
    fake_mmcv_build(wheelhouse, "cuda-build", python=f"{sys.version_info.major}.{sys.version_info.minor}",
                    torch=version, cuda="13.0", archs="9.0")
    result = run(["bash", "tools/setup.sh", "--system-torch", "--no-hf", "--no-build", "--wheelhouse", str(wheelhouse)],
                 env=dict(PYTHON=str(venv_seeing_this_environment / "bin/python"),
                          SOMA_VENV=str(venv_seeing_this_environment), SOMA_CACHE_DIR=str(tmp_path / "cache"),
                          FORCE_CUDA="0", CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"no prebuilt mmcv wheel in {wheelhouse}/mmcv matches mmcv-2.1.0-torch{version}-{tag}-cpu" in result.stderr
    assert "other-python: built for Python cp39" in result.stderr
    assert f"other-torch: built for torch 2.0.0 (here: {version})" in result.stderr
    assert "cuda-build: built for CUDA 13.0 (here: none)" in result.stderr
    assert "--no-build: no prebuilt" in result.stderr and "tools/build_mmcv_wheel.sh" in result.stderr
    assert not (tmp_path / "cache").exists()  # nothing was built


@pytest.mark.parametrize("args, message", [
    (["--python", "3.12", "--torch", "2.11.0"], "say what to build: --cuda-arch LIST"),
    (["--python", "3.12", "--torch", "2.11.0", "--cpu", "--cuda-arch", "9.0"], "--cpu and --cuda-arch exclude"),
    (["--python", "3.12", "--torch", "2.11.0", "--cuda-arch", "sm_90"], "--cuda-arch takes TORCH_CUDA_ARCH_LIST"),
    (["--python", "312", "--torch", "2.11.0", "--cpu"], "--python takes MAJOR.MINOR"),
    (["--python", "3.12", "--torch", "latest", "--cpu"], "--torch takes a release such as 2.11.0"),
    (["--python", "3.99", "--torch", "2.11.0", "--cpu"], "no Python 3.99 interpreter found"),
])
def test_build_mmcv_wheel_refuses_bad_requests_in_one_line(args, message, tmp_path):
    result = run(["bash", "tools/build_mmcv_wheel.sh", str(tmp_path / "out"), *args])
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "out"
    # No time limit: the test checks that every step runs and is reported, on machines that may be loaded.
    result = run(["bash", "tools/gpu_check.sh", str(out), "--cpu-dry-run", "--budget", "100000"],
                 env=dict(PYTHON=sys.executable))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = (out / "steps.tsv").read_text().splitlines()
    statuses = {line.split("\t")[0]: line.split("\t")[1] for line in steps[1:]}
    assert statuses == {"set-up": "skipped: CPU dry run", "pytest -m gpu": "ok", "train-step benchmark": "ok",
                        "SVD init benchmark": "ok", "demo training run": "ok", "7B training step": "ok",
                        "7B SVD init": "ok", "total": "ok"}
    cases = list(ET.parse(out / "pytest.xml").getroot().iter("testcase"))
    assert len(cases) >= 7 and all(case.find("skipped") is not None for case in cases)  # no CUDA here
    report = (out / "report.md").read_text()
    for heading in ("## Steps", "## Goals", "## GPU tests", "## Training step", "## SVD initialisation",
                    "## A real training run", "## The largest backbone"):
        assert heading in report
    for row in ("| full |", "| lora |", "| soma |", "| plain backbone |", "| SoMA merged |",
                "| svd_method='auto' (the default) |"):
        assert row in report, report
    assert "CPU dry run at tiny sizes" in report and "deformable attention: pure PyTorch" in report
    assert "| this run | " in report  # the demo's per-domain mIoU
    assert "planner error" in report and "7B SVD" in report
    metrics = json.loads((out / "report.json").read_text())["demo"]
    assert {"source/mIoU", "night/mIoU", "fog/mIoU", "palette/mIoU", "mean/mIoU"} <= set(metrics)
