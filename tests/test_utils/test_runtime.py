"""Importing soma changes nothing in mmengine, mmcv or mmdet; ``setup_runtime`` applies the checkpoint policy (only
the named checkpoint is unpickled fully), atomic checkpoint writes and the mmcv op settings."""
import os
import subprocess
import sys
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch

from soma.utils.runtime import setup_runtime
from soma.engine.runner import SoMARunner

from ..conftest import REPO


@pytest.fixture
def runtime(monkeypatch):
    """:func:`setup_runtime` for one test: mmengine's loader table and file backends, the trusted files and mmcv's
    deformable attention are put back afterwards, so the rest of the session sees them untouched."""
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
    from mmengine.fileio import io as mmengine_io
    from mmengine.fileio.backends import backends, prefix_to_backends
    from mmengine.runner.checkpoint import CheckpointLoader

    from soma.utils import checkpoint

    monkeypatch.setattr(CheckpointLoader, "_schemes", OrderedDict(CheckpointLoader._schemes))  # mutated in place
    monkeypatch.setitem(backends, "local", backends["local"])
    monkeypatch.setitem(prefix_to_backends, "", prefix_to_backends[""])
    monkeypatch.setattr(mmengine_io, "backend_instances", dict(mmengine_io.backend_instances))
    monkeypatch.setattr(checkpoint, "_trusted_paths", set())
    if "apply" in vars(MultiScaleDeformableAttnFunction):  # replaced earlier in the session: mmcv's own for now
        monkeypatch.delattr(MultiScaleDeformableAttnFunction, "apply")
    monkeypatch.setattr(MultiScaleDeformableAttnFunction, "apply", MultiScaleDeformableAttnFunction.apply)
    monkeypatch.delenv("SOMA_MSDA_PYTORCH", raising=False)
    return setup_runtime


def runner_checkpoint(path):
    """What mmengine's Runner writes: tensors plus Python objects (a MessageHub's HistoryBuffer)."""
    from mmengine.logging import HistoryBuffer

    torch.save({"state_dict": {"w": torch.ones(2)}, "message_hub": {"log": HistoryBuffer([1.0, 2.0], [1, 1])},
                "meta": {"iter": 10}}, path)
    return path


def test_only_the_named_checkpoint_is_unpickled(tmp_path, runtime, monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint

    named, other = runner_checkpoint(tmp_path / "iter_10.pth"), runner_checkpoint(tmp_path / "other.pth")
    weights = tmp_path / "dinov2.pth"
    torch.save({"pos_embed": torch.zeros(1, 5, 8)}, weights)
    runtime(trusted_checkpoints=[named, None, "https://example.com/x.pth"])
    assert _load_checkpoint(str(named), map_location="cpu")["meta"]["iter"] == 10  # load_from / --resume
    monkeypatch.chdir(tmp_path)
    assert _load_checkpoint("iter_10.pth")["meta"]["iter"] == 10  # the same file by a relative path
    with pytest.raises(RuntimeError, match="holds Python objects besides tensors"):
        _load_checkpoint(str(other))  # any other file: weights_only
    assert _load_checkpoint(str(weights))["pos_embed"].shape == (1, 5, 8)  # plain weight files still load


def test_soma_runner_unpickles_the_file_it_was_asked_to_load():
    def names(filename, load_from, resume=False):
        return SoMARunner._names_load_target(SimpleNamespace(_load_from=load_from, _resume=resume), filename)

    assert names("work/iter_4.pth", "work/iter_4.pth") and names("work/../work/iter_4.pth", "work/iter_4.pth")
    assert not names("work/iter_2.pth", "work/iter_4.pth")  # a file other than load_from
    assert not names("https://example.com/iter_4.pth", "https://example.com/iter_4.pth")  # mmengine's loaders
    assert names("work/iter_4.pth", None, resume=True)  # mmengine's automatic resume: the work dir's latest
    assert not names("work/iter_4.pth", None)


def test_checkpoint_writes_are_atomic_even_for_a_backend_made_before(tmp_path, runtime):
    from mmengine.fileio import get_file_backend

    get_file_backend(str(tmp_path))  # cached by mmengine before the set-up
    runtime()
    backend = get_file_backend(str(tmp_path))
    assert type(backend).__name__ == "AtomicLocalBackend"
    target = tmp_path / "iter_2.pth"
    target.write_bytes(b"previous")

    with pytest.raises(TypeError):
        backend.put("not bytes", target)  # a failed write leaves the previous file and no temporary one
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["iter_2.pth"]
    backend.put(b"new", target)
    assert target.read_bytes() == b"new"


def test_msda_option_applies_at_set_up(runtime, monkeypatch):
    from soma.utils.mmcv_ops import msda_uses_pytorch

    monkeypatch.setenv("SOMA_MSDA_PYTORCH", "1")
    assert not msda_uses_pytorch()
    with pytest.warns(UserWarning, match="pure-PyTorch path"):
        runtime()
    assert msda_uses_pytorch()


IMPORT_CHANGES_NOTHING = """
import mmcv.ops, mmcv._ext
import mmdet.models.losses.focal_loss as focal_loss
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
from mmengine.fileio.backends import backends, prefix_to_backends
from mmengine.runner.checkpoint import CheckpointLoader

def state():
    return (CheckpointLoader._schemes[""], backends["local"], prefix_to_backends[""],
            MultiScaleDeformableAttnFunction.apply, focal_loss._sigmoid_focal_loss,
            {name: getattr(mmcv._ext, name) for name in dir(mmcv._ext)})

before = state()
import soma, soma.apis, soma.utils.runtime, soma.utils
from mmseg.utils import register_all_modules
register_all_modules()
print("unchanged" if state() == before else f"changed: {before} -> {state()}")
soma.utils.runtime.setup_runtime()
print(CheckpointLoader._schemes[""].__name__, backends["local"].__name__, soma.utils.mmcv_ops.msda_uses_pytorch())
"""


@pytest.mark.slow  # a fresh interpreter
def test_importing_soma_leaves_mmengine_and_mmcv_untouched():
    env = dict(os.environ, SOMA_MSDA_PYTORCH="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", IMPORT_CHANGES_NOTHING], capture_output=True,
                         text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["unchanged", "load_local_checkpoint AtomicLocalBackend True"], out.stdout
