"""GPU tests: marked ``gpu`` and skipped without CUDA (``pytest -m gpu tests/test_gpu`` on a GPU machine).

Tests whose logic is cheap on a CPU are parametrised over devices: the ``cpu`` case runs everywhere (not
marked ``gpu``), the ``cuda`` case only where CUDA is available.
"""
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
GPU = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")]
DEVICES = [pytest.param("cuda", marks=GPU, id="cuda"), pytest.param("cpu", id="cpu")]


@pytest.fixture
def restore_mmcv_ops(monkeypatch):
    """mmcv/mmdet functions that AMP (bf16) or SOMA_MSDA_PYTORCH replace are put back after the test."""
    import mmdet.models.losses.focal_loss as focal_loss
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction

    monkeypatch.setattr(MultiScaleDeformableAttnFunction, "apply", MultiScaleDeformableAttnFunction.apply)
    monkeypatch.setattr(focal_loss, "_sigmoid_focal_loss", focal_loss._sigmoid_focal_loss)


@pytest.fixture(autouse=True, scope="session")
def soma_runtime():
    """What the tools set up before a run (importing soma does not): SOMA_MSDA_PYTORCH and named errors for the
    CUDA ops an mmcv without them lacks."""
    from soma.utils.runtime import setup_runtime

    setup_runtime()
