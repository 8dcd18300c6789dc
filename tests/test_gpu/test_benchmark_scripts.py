"""tools/benchmark/train_step.py and svd_init.py on the GPU at a small size (a smoke run: no timing assertion).

Checks that every method and inference variant runs in bf16 and reports CUDA peak memory.
"""
import json
import subprocess
import sys

from ..conftest import REPO
from .conftest import GPU

pytestmark = GPU


def test_train_step_benchmark_small_on_cuda(tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "tools/benchmark/train_step.py", "--small", "--device", "cuda",
                          "--json", str(out)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["device"].startswith("cuda")
    training = {r["method"]: r for r in results["training"]}
    assert set(training) == {"full", "frozen", "lora", "soma"}
    assert all(r["amp"] == "bfloat16" and r["peak_mib"] > 0 and r["step_s"] > 0 for r in training.values())
    assert {r["model"] for r in results["inference"]} == {"plain backbone", "SoMA merged", "SoMA unmerged"}


def test_svd_init_benchmark_small_on_cuda():
    run = subprocess.run([sys.executable, "tools/benchmark/svd_init.py", "--small", "--device", "cuda"], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SoMA initialisation on cuda" in run.stdout and "svd_method='auto'" in run.stdout
