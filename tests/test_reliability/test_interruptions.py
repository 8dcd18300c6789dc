"""Interrupted work loses nothing: atomic checkpoint writes, --resume reproduces the uninterrupted run.

Tolerance: on CPU, with the random state checkpointed (RandomStateHook), a resumed run and two identically
seeded runs give bit-identical weights; the tests allow 1e-6 absolute to stay robust to BLAS thread scheduling.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ..conftest import REPO
from ..test_tools.test_train import CONFIG, make_cityscapes_like

TOLERANCE = 1e-6

# Imported by the config of an interrupted run (custom_imports): dies like `kill -9` while writing iter_4.pth,
# after half of its bytes are on disk.
KILL_MID_SAVE = '''
import os
from pathlib import Path

_write_bytes = Path.write_bytes


def _dying_write_bytes(self, data):
    if ".iter_4." in self.name:
        with open(self, "wb") as stream:
            stream.write(data[: len(data) // 2])
        os._exit(137)
    return _write_bytes(self, data)


Path.write_bytes = _dying_write_bytes
'''

RAISE_OOM = '''
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RaiseOutOfMemoryHook(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
'''


def custom_imports(module):
    """The config line that imports soma's registered parts and the test's own ``module``."""
    from soma import OPENMMLAB_PACKAGES

    return f"custom_imports = dict(imports={[*OPENMMLAB_PACKAGES, module]!r})\n"


def write_config(tmp_path, name, extra=""):
    config = tmp_path / f"{name}.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data") + textwrap.dedent(extra))
    return config


def train(config, work_dir, *extra, env_path=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env_path])))
    return subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir", str(work_dir),
                           *extra], capture_output=True, text=True, cwd=REPO, env=env)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst <= TOLERANCE, worst


pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier


@pytest.fixture
def data(tmp_path):
    make_cityscapes_like(tmp_path / "data")


def test_killed_mid_save_then_resume_matches_the_uninterrupted_run(tmp_path, data):
    # max_iters=6 with checkpoints every 2 iterations; the killed run dies while writing iter_4.pth
    schedule = ("train_cfg = dict(max_iters=6, val_interval=100)\ndefault_hooks = dict(checkpoint=dict(interval=2))\n"
                "randomness = dict(seed=0)\n")
    uninterrupted = write_config(tmp_path, "uninterrupted", schedule)
    result = train(uninterrupted, tmp_path / "a")
    assert result.returncode == 0, result.stderr[-3000:]

    (tmp_path / "kill_mid_save.py").write_text(KILL_MID_SAVE)
    killed = write_config(tmp_path, "killed", schedule + custom_imports("kill_mid_save"))
    result = train(killed, tmp_path / "b", env_path=str(tmp_path))
    assert result.returncode == 137
    assert not (tmp_path / "b/iter_4.pth").exists()  # no truncated checkpoint under the real name
    assert (tmp_path / "b/last_checkpoint").read_text().strip().endswith("iter_2.pth")
    assert_same_weights(weights(tmp_path / "b/iter_2.pth"), weights(tmp_path / "a/iter_2.pth"))  # seeded runs agree

    result = train(uninterrupted, tmp_path / "b", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed" in (result.stdout + result.stderr).lower()
    assert_same_weights(weights(tmp_path / "b/iter_6.pth"), weights(tmp_path / "a/iter_6.pth"))


def test_out_of_memory_says_what_to_change(tmp_path, data):
    (tmp_path / "raise_oom.py").write_text(RAISE_OOM)
    config = write_config(tmp_path, "oom", custom_imports("raise_oom")
                          + 'custom_hooks = [dict(type="RaiseOutOfMemoryHook")]\n')
    result = train(config, tmp_path / "work", env_path=str(tmp_path))
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "out of GPU memory" in message and "train_dataloader.batch_size=<smaller than 2>" in message
    assert "model.backbone.with_cp=True" in message and "--amp" in message


def test_resume_finds_the_latest_checkpoint_when_last_checkpoint_is_unusable(tmp_path):
    from soma.apis.training import latest_checkpoint

    assert latest_checkpoint(str(tmp_path)) is None  # nothing to resume: a fresh start
    for name in ("iter_2.pth", "iter_10.pth", "iter_4.pth", "best_mIoU_iter_10.pth"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4.pth"))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_4.pth")  # what mmengine recorded wins
    (tmp_path / "last_checkpoint").write_text("")  # emptied by a kill while mmengine rewrote it
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_10.pth")  # numerically highest, not by name
    (tmp_path / "iter_10.pth").unlink()
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_10.pth"))  # names a deleted file
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_4.pth")


def test_resume_of_two_processes_matches_the_uninterrupted_run(tmp_path, data):
    """2 gloo processes: stopped at iteration 2 and resumed, the run ends with the weights of the one that was not
    interrupted. Each process has its own random stream (`diff_rank_seed`; Mask2Former samples points per
    image), so each must get its own state back, not rank 0's."""
    schedule = ("train_cfg = dict(max_iters=4, val_interval=100)\ndefault_hooks = dict(checkpoint=dict(interval=2))\n"
                "randomness = dict(seed=0, diff_rank_seed=True)\nval_cfg = val_dataloader = val_evaluator = None\n")
    config = write_config(tmp_path, "two_processes", schedule)
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PORT=str(32500 + os.getpid() % 1000))

    def dist_train(work_dir, *extra):
        result = subprocess.run(["bash", str(REPO / "tools/dist_train.sh"), str(config), "2", "--work-dir",
                                 str(work_dir), *extra], capture_output=True, text=True, cwd=REPO, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    dist_train(tmp_path / "a")
    dist_train(tmp_path / "b", "--cfg-options", "train_cfg.max_iters=2")  # the interrupted run stops at 2
    assert not (tmp_path / "b/iter_4.pth").exists()
    assert "resumed" in dist_train(tmp_path / "b", "--resume").lower()
    assert_same_weights(weights(tmp_path / "b/iter_4.pth"), weights(tmp_path / "a/iter_4.pth"))
