"""Checkpoint converters: released backbone weights → SoMA's backbone format, and the official SoMA release importer.

    python tools/convert_models/dinov2.py SRC DST     # soma.convert.models.dinov2
    python tools/convert_models/eva02.py SRC DST      # soma.convert.models.eva02
    python tools/convert_models/dinov3.py SRC DST     # soma.convert.models.dinov3
    python tools/convert_models/released_soma.py RELEASED_BEST.pth DINOV2_RELEASE.pth OUT.pth [--config CONFIG]

:mod:`.filters` holds the one conversion per family that both the converters and the backbones (loading a release
file named in ``init_cfg``) run; :mod:`.hf_layouts` reads the transformers checkpoints; :mod:`.common` the shared
command line, checks and patch-kernel resampling. Nothing is imported here, so that the backbones can import
:mod:`.filters` without importing the converters (which import the backbones).
"""
