"""``pip install .`` gives the adapter library alone: in a fresh virtualenv with torch and nothing of OpenMMLab,
``soma.peft`` adapts a model, trains a step, merges, saves and loads an adapter."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv

import pytest
from packaging.requirements import Requirement

from ..conftest import REPO
from ..test_tools.test_setup_wheelhouse import add_site_dir, link_distributions

# The packages the fresh environment gets from this one (torch and what it needs; numpy; the build backend).
PROVIDED = ("torch", "numpy", "setuptools", "wheel")
OPENMMLAB = ("mmengine", "mmcv", "mmseg", "mmdet", "timm", "peft", "transformers")

USE = """
import sys, torch
import soma.peft as sp
loaded = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
x, y = torch.randn(64, 16), torch.randn(64, 4)
before = model(x).detach()
sp.apply_soma(model, sp.SoMAConfig(r=2, target_modules=("0", "2")))
at_init = (model(x) - before).abs().max().item()
trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
loss0 = torch.nn.functional.mse_loss(model(x), y)
loss0.backward(); optimizer.step()
loss1 = torch.nn.functional.mse_loss(model(x), y).item()
trained = model(x).detach()
state = sp.adapter_state_dict(model)
torch.save(state, sys.argv[1])
torch.manual_seed(0)
fresh = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
sp.apply_soma(fresh, sp.SoMAConfig(r=2, target_modules=("0", "2")))
sp.load_adapter_state_dict(fresh, torch.load(sys.argv[1], weights_only=True))
sp.merge_adapters(fresh)
import json
merged = all(layer.merged for layer in sp.adapter_layers(fresh).values())
print(json.dumps(dict(loaded=loaded, at_init=at_init, trainable=trainable, loss0=loss0.item(), loss1=loss1,
                      reloaded=(fresh(x) - trained).abs().max().item(), merged=merged)))
""" % (OPENMMLAB,)


@pytest.mark.slow  # builds a virtualenv and installs soma into it (about a minute)
def test_soma_peft_in_a_fresh_virtualenv_with_torch_only(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin/python"
    # Python < 3.12's ensurepip puts its own setuptools (65.x, too old for PEP 639 licence fields) into the venv,
    # ahead of the provided one; the build backend must be the one pyproject asks for.
    subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "setuptools"], capture_output=True, check=True)
    (tmp_path / "provided").mkdir()
    link_distributions(list(PROVIDED), tmp_path / "provided")
    add_site_dir(python, tmp_path / "provided", "provided")
    source = tmp_path / "src"  # a copy: pip builds in the source tree, which must stay the checkout's
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "soma", source / "soma", ignore=shutil.ignore_patterns("__pycache__"))
    # No index: every core dependency must already be there, so nothing of OpenMMLab can come in.
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation",
                              str(source)], capture_output=True, text=True, env=dict(os.environ, PIP_NO_CACHE_DIR="1"))
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.requires('soma'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    requires = eval(check.stdout)  # noqa: S307 (our own subprocess's repr of a list of strings)
    core = sorted(Requirement(r).name for r in requires if "extra ==" not in r)
    assert core == ["numpy", "torch"], requires
    extras = {r.split("extra == ")[1].strip("'\"") for r in requires if "extra ==" in r}
    assert extras == {"mm", "hf"}
    for name in OPENMMLAB:  # the fresh environment really lacks them
        probe = subprocess.run([python, "-c", f"import {name}"], capture_output=True, text=True, cwd=tmp_path)
        assert probe.returncode != 0, f"{name} is importable in the fresh environment"
    result = subprocess.run([python, "-c", USE, str(tmp_path / "adapter.pt")], capture_output=True, text=True,
                            cwd=tmp_path)  # not the checkout: the installed soma
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["loaded"] == []
    assert report["at_init"] < 1e-5  # the SVD split keeps the function
    assert report["trainable"] == ["0.base_layer.bias", "0.lora_A", "0.lora_B", "2.base_layer.bias", "2.lora_A",
                                   "2.lora_B"]
    assert report["loss1"] < report["loss0"]
    assert report["reloaded"] < 1e-5 and report["merged"]
    assert sys.executable != str(python)
