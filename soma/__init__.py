"""SoMA: Singular value decomposed Minor components Adaptation (arXiv:2412.04077).

Importing ``soma`` imports nothing else: ``soma.peft`` is the adapter library (PyTorch only), and the OpenMMLab
parts register themselves when their package is imported, which the configs ask for by name::

    custom_imports = dict(imports=["soma.models", "soma.datasets", "soma.evaluation", "soma.engine"],
                          allow_failed_imports=False)

mmengine's checkpoint loading and file writes and mmcv's ops are set up only by
:func:`soma.utils.runtime.setup_runtime`, which tools/train.py and tools/test.py call.
"""
__version__ = "0.1.0"

# What `custom_imports` must name for a config to build: every package that registers OpenMMLab modules.
OPENMMLAB_PACKAGES = ("soma.models", "soma.datasets", "soma.evaluation", "soma.engine")


def register_all_modules() -> None:
    """Import every package of :data:`OPENMMLAB_PACKAGES`, registering SoMA's modules in mmseg's, mmdet's and
    mmengine's registries (as ``custom_imports`` does for a config; mmseg's function of the same name does it for
    mmseg's own modules)."""
    from importlib import import_module

    for package in OPENMMLAB_PACKAGES:
        import_module(package)
