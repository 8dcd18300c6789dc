"""SoMA: Singular value decomposed Minor components Adaptation (arXiv:2412.04077).

``soma.peft`` is pure PyTorch and works on any ``nn.Module``. Importing ``soma`` itself also registers the
backbones, datasets, metrics and engine parts in mmsegmentation's and mmdetection's registries, which is what
``custom_imports = dict(imports=["soma"], allow_failed_imports=False)`` in our configs relies on. That is all
an import changes: mmengine's checkpoint loading and file writes and mmcv's ops are set up only by
:func:`soma.apis.runtime.setup_runtime`, which tools/train.py and tools/test.py call. Without mmsegmentation
installed only ``soma.peft`` is usable.
"""
from importlib.util import find_spec

__version__ = "0.1.0"

if find_spec("mmseg") is not None and find_spec("mmdet") is not None:
    # Import errors propagate: a half-installed OpenMMLab stack must not silently drop our modules.
    from . import datasets, engine, evaluation, models, utils  # noqa: F401  (registration side effects)
