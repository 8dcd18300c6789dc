"""Checkpoint converters: released backbone weights → SoMA's backbone format, and the official SoMA release importer.

    python tools/convert_models/dinov2.py SRC DST     # soma.convert.models.dinov2
    python tools/convert_models/eva02.py SRC DST      # soma.convert.models.eva02
    python tools/convert_models/dinov3.py SRC DST     # soma.convert.models.dinov3
    python tools/convert_models/released_soma.py RELEASED_BEST.pth DINOV2_RELEASE.pth OUT.pth [--config CONFIG]

The conversion of each family's state dicts into timm's layout (official, timm and transformers keys) lives next to
the backbones, which run it when ``init_cfg`` names a release file (:mod:`soma.models.backbones.checkpoint_filters`,
:mod:`soma.models.backbones.hf_layouts`), as timm keeps ``checkpoint_filter_fn`` next to its models; :mod:`.common`
is the shared command line, checks and patch-kernel resampling.
"""
