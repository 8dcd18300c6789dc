"""Registration of our modules in both OpenMMLab task registries.

Backbones and necks serve segmentation (mmseg) and detection (mmdet) configs alike, so they are registered in
both ``MODELS`` registries under the same name.
"""
from __future__ import annotations

from typing import TypeVar

from mmdet.registry import MODELS as DET_MODELS
from mmseg.registry import MODELS as SEG_MODELS

T = TypeVar("T", bound=type)


def register_model(cls: T) -> T:
    """Class decorator: register ``cls`` in mmseg's and mmdet's ``MODELS`` under its class name."""
    SEG_MODELS.register_module(module=cls)
    DET_MODELS.register_module(module=cls)
    return cls

