"""Offline install: a wheelhouse made once (tools/make_wheelhouse.sh --system-torch, cached under
SOMA_CACHE_DIR), then tools/setup.sh --wheelhouse --system-torch into a fresh venv with no index passes the
import check.

The torch wheels with CUDA are about 6 GB, so the "machine's torch" is this environment's: torch,
torchvision and what they need, linked alone into a folder an interpreter sees through a .pth file (as torch
preinstalled on a GPU cluster). Everything else comes from the wheelhouse; mmcv from the wheel tools/setup.sh
cached for this torch (it is built from the wheelhouse's source, about 9 min on 2 cores, only if none is cached).
"""
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..conftest import REPO

CACHE = Path(os.environ.get("SOMA_CACHE_DIR")
             or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "soma")


def cached_wheelhouse() -> Path:
    """The wheelhouse for this Python, remade only when requirements.txt or the script changes."""
    inputs = b"".join((REPO / name).read_bytes() for name in ("requirements.txt", "tools/make_wheelhouse.sh"))
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheelhouse = CACHE / "test-wheelhouse" / f"{tag}-{hashlib.sha256(inputs).hexdigest()[:12]}"
    if not (wheelhouse / "WHEELHOUSE.txt").exists():
        partial = wheelhouse.with_name(wheelhouse.name + ".partial")
        made = subprocess.run(["bash", "tools/make_wheelhouse.sh", str(partial), "--system-torch"], cwd=REPO,
                              capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
        assert made.returncode == 0, made.stderr[-3000:]
        partial.rename(wheelhouse)
    return wheelhouse


def link_distributions(names: list[str], target: Path) -> None:
    """Symlink the installed files of ``names`` and their dependencies (with the extras asked for) into ``target``."""
    seen, todo = set(), [(name, frozenset()) for name in names]
    while todo:
        name, extras = todo.pop()
        name = canonicalize_name(name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in map(Requirement, dist.requires or []):
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra})
                                                 for extra in {"", *extras}):
                todo.append((requirement.name, frozenset(requirement.extras)))
        for top in {file.parts[0] for file in dist.files or []} - {"..", "__pycache__"}:
            if not (target / top).exists():
                (target / top).symlink_to(dist.locate_file(top))


def add_site_dir(python: Path, folder: Path, name: str) -> None:
    """Make ``folder`` a site directory of ``python``'s environment with its own .pth files processed (setuptools'
    distutils shim among them), as a machine's preinstalled packages are; a plain path in a .pth skips them."""
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, f"{name}.pth").write_text(f"import site; site.addsitedir({str(folder)!r})\n")


@pytest.mark.slow
def test_offline_install_from_the_wheelhouse_with_the_machines_torch(tmp_path):
    wheelhouse = cached_wheelhouse()
    assert not list(wheelhouse.glob("torch-*.whl")) and (wheelhouse / "src/mmcv-2.1.0.tar.gz").exists()
    system = tmp_path / "system-site"
    system.mkdir()
    link_distributions(["torch", "torchvision"], system)
    machine = tmp_path / "machine"  # an interpreter whose only extra packages are torch's
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(machine)], check=True)
    add_site_dir(machine / "bin/python", system, "machine-torch")
    venv = tmp_path / "venv"
    setup = subprocess.run(["bash", "tools/setup.sh", "--system-torch", "--wheelhouse", str(wheelhouse)], cwd=REPO,
                           capture_output=True, text=True,
                           env=dict(os.environ, PYTHON=str(machine / "bin/python"), SOMA_VENV=str(venv),
                                    SOMA_CACHE_DIR=str(CACHE), PIP_INDEX_URL="http://127.0.0.1:9/nowhere"))
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert "[setup] OK: torch" in setup.stdout and (venv / ".soma-setup-ok").exists()
    where = subprocess.run([str(venv / "bin/python"), "-c", "import torch, mmseg, mmdet, timm, mmengine, mmcv.ops\n"
                            "for m in (torch, mmseg, mmdet, timm, mmengine): print(m.__name__, m.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0, where.stderr[-3000:]
    files = dict(line.split(" ", 1) for line in where.stdout.splitlines())
    assert files["torch"].startswith(str(system))  # the machine's torch was kept
    for name in ("mmseg", "mmdet", "timm", "mmengine"):  # the rest came from the wheelhouse
        assert files[name].startswith(str(venv)), files


def python_312() -> Path | None:
    """A Python 3.12 interpreter (the lent GPU machine's version), on PATH or under pyenv."""
    candidates = [Path(p) for p in [shutil.which("python3.12")] if p]
    candidates += sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/3.12.*/bin/python"))
    for candidate in candidates:
        if subprocess.run([str(candidate), "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.slow
def test_gpu_machine_rehearsal_installs_the_prebuilt_mmcv_and_the_dry_run_passes(tmp_path):
    """The lent GPU machine played on this one: Python 3.12 with torch 2.11.0 (and numpy, scipy, pillow, matplotlib,
    opencv-python-headless, timm, transformers, peft) as the machine's own packages, the --profile gpu-check
    wheelhouse (its mmcv wheel built here with CPU ops: the CUDA build takes about 40 min on 2 cores), no index.
    Set-up must install the prebuilt wheel without compiling, and the GPU check's --cpu-dry-run steps must pass in
    that environment."""
    python = python_312()
    if python is None:
        pytest.skip("needs a Python 3.12 interpreter (python3.12 or pyenv)")
    inputs = b"".join((REPO / name).read_bytes() for name in (
        "requirements.txt", "tools/make_wheelhouse.sh", "tools/build_mmcv_wheel.sh"))
    wheelhouse = CACHE / "test-wheelhouse" / f"gpu-check-cpu-{hashlib.sha256(inputs).hexdigest()[:12]}"
    if not (wheelhouse / "WHEELHOUSE.txt").exists():
        partial = wheelhouse.with_name(wheelhouse.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        made = subprocess.run(["bash", "tools/make_wheelhouse.sh", str(partial), "--profile", "gpu-check",
                               "--mmcv", "cpu"], cwd=REPO, capture_output=True, text=True,
                              env=dict(os.environ, SOMA_CACHE_DIR=str(CACHE)))
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
        partial.rename(wheelhouse)
    left_out = ("numpy", "scipy", "opencv_python", "matplotlib", "fonttools", "peft", "transformers")
    assert not [wheel.name for wheel in wheelhouse.glob("*.whl") if wheel.name.split("-")[0].lower() in left_out]
    assert list(wheelhouse.glob("mmcv/mmcv-2.1.0-torch2.11.0-cp312-cpu/mmcv-2.1.0-cp312-*.whl"))
    build_env = CACHE / "build-envs/cp312-torch2.11.0"  # torch 2.11.0 from the index, made by make_wheelhouse
    machine = tmp_path / "machine"
    subprocess.run([str(python), "-m", "venv", str(machine)], check=True)
    torch_site = subprocess.run([str(build_env / "bin/python"), "-c",
                                 "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    add_site_dir(machine / "bin/python", Path(torch_site), "machine-torch")
    # What the lent machine has besides torch (from the index here; the machine has them preinstalled).
    subprocess.run([str(machine / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "torchvision==0.26.0"],
                   check=True)
    subprocess.run([str(machine / "bin/python"), "-m", "pip", "install", "-q", "scipy", "pillow", "matplotlib",
                    "opencv-python-headless", "timm", "transformers", "peft"], check=True)
    venv = tmp_path / "venv"
    setup = subprocess.run(["bash", "tools/setup.sh", "--system-torch", "--no-hf", "--no-build", "--wheelhouse",
                            str(wheelhouse)], cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, PYTHON=str(machine / "bin/python"), SOMA_VENV=str(venv),
                                    SOMA_CACHE_DIR=str(tmp_path / "empty-cache"),
                                    PIP_INDEX_URL="http://127.0.0.1:9/nowhere"))
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert "prebuilt mmcv wheel from the wheelhouse" in setup.stdout and "building mmcv" not in setup.stdout
    assert "the installed opencv-python-headless stands in for it" in setup.stdout
    out = tmp_path / "check"
    check = subprocess.run(["bash", "tools/gpu_check.sh", str(out), "--cpu-dry-run", "--budget", "100000"], cwd=REPO,
                           capture_output=True, text=True, env=dict(os.environ, PYTHON=str(venv / "bin/python")))
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:] + (out / "report.md").read_text()
    assert "torch 2.11.0" in (out / "train_step.log").read_text()
