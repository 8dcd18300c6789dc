"""A config says what runs: plain mmengine (``Runner.from_cfg(cfg).train()``) trains the same run as tools/train.py."""
import subprocess
import sys

import pytest
import torch

from ..conftest import REPO
from .test_train import CONFIG, make_cityscapes_like, run_train

PLAIN_MMENGINE = """
import sys
from mmengine.config import Config
from mmengine.runner import Runner

cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
runner = Runner.from_cfg(cfg)
print("hooks:", sorted(type(hook).__name__ for hook in runner.hooks))
runner.train()
"""


def test_the_runtime_config_names_the_runner_and_hooks_the_tools_used_to_add():
    from mmengine.config import Config

    cfg = Config.fromfile(REPO / "configs/soma/soma_dinov2-l_gta2cbm-512.py")
    assert cfg.runner_type == "SoMARunner"
    assert cfg.default_hooks.random_state.type == "RandomStateHook"
    assert cfg.default_hooks.label_size_check.type == "LabelSizeCheckHook"
    assert cfg.default_hooks.checkpoint.save_best == "mean/mIoU"  # the recipe's own hooks merge with them


@pytest.mark.slow
def test_plain_runner_from_cfg_trains_the_same_run_as_the_tool(tmp_path):
    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny_train.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data") + "train_cfg = dict(max_iters=2)\n")
    result = run_train(config, tmp_path / "tool")
    assert result.returncode == 0, result.stderr[-3000:]
    plain = subprocess.run([sys.executable, "-c", PLAIN_MMENGINE, str(config), str(tmp_path / "plain")],
                           capture_output=True, text=True, cwd=REPO)
    assert plain.returncode == 0, plain.stderr[-3000:]
    hooks = next(line for line in plain.stdout.splitlines() if line.startswith("hooks:"))
    assert "RandomStateHook" in hooks and "LabelSizeCheckHook" in hooks
    tool_state = torch.load(tmp_path / "tool/iter_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    plain_state = torch.load(tmp_path / "plain/iter_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert tool_state.keys() == plain_state.keys()
    trained = [key for key in tool_state if "lora_" in key]
    assert trained  # the adapters were trained in both runs ...
    for key, value in tool_state.items():  # ... to the same weights: one seed, one run
        torch.testing.assert_close(plain_state[key], value, rtol=0, atol=0, msg=key)
