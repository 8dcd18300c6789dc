"""tools/benchmark/train_step.py runs end to end on CPU with the tiny arch (a smoke run: no timing assertion)."""
import json
import subprocess
import sys

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier


def test_benchmark_smoke_run_prints_ratios_for_every_method(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "tools/benchmark/train_step.py", "--small", "--device", "cpu",
                             "--json", str(out)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    for row in ("full", "frozen", "lora", "soma", "plain backbone", "SoMA merged", "SoMA unmerged"):
        assert f"\n{row} " in table, table
    assert "device: cpu" in table and "precision float32" in table and "(18 windows)" in table
    results = json.loads(out.read_text())
    training = {r["method"]: r for r in results["training"]}
    assert training["frozen"]["trainable"] < training["soma"]["trainable"] == training["lora"]["trainable"]
    assert training["soma"]["trainable"] < training["full"]["trainable"]
    assert all(r["step_s"] > 0 and r["peak_mib"] > 0 for r in training.values())
