"""``tools/dist_train.sh CONFIG 1`` on a GPU: one process, NCCL, the tiny SoMA segmentor (FCN head), 3 iterations.

Checks the run ends with a checkpoint at iteration 3 whose adapters moved, and that the backend was NCCL
(the CPU/gloo variant with 2 processes is tests/test_reliability/test_distributed.py).
"""
import os
import subprocess
import sys

import torch

from ..conftest import REPO
from ..test_reliability.test_distributed import CONFIG
from ..test_tools.test_train import make_cityscapes_like
from .conftest import GPU

pytestmark = GPU


def test_one_process_nccl_run(tmp_path):
    make_cityscapes_like(tmp_path / "data", num_images=2)
    config = tmp_path / "one_gpu.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data", batch=2))
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(32500 + os.getpid() % 1000))
    run = subprocess.run(["bash", "tools/dist_train.sh", str(config), "1", "--work-dir", str(tmp_path / "work")],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stdout + run.stderr
    # With CUDA the config's NCCL backend is used as is (no gloo/CPU wrapper switch).
    assert "Distributed training: True" in log and "dist_cfg=dict(backend='nccl')" in log, log[-3000:]
    assert "CPUDistributedDataParallel" not in log
    checkpoint = torch.load(tmp_path / "work/iter_3.pth", map_location="cpu", weights_only=False)
    assert checkpoint["meta"]["iter"] == 3
    adapters = [k for k in checkpoint["state_dict"] if k.endswith("lora_B")]
    assert adapters
