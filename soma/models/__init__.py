"""Backbones and model glue registered in mmseg and mmdet."""
from .backbones import DINOv2, DINOv3, EVA02, FoundationViT
from .decode_heads import ReinMask2FormerHead
from .detectors import CoDINO, CoDINOHead  # noqa: F401  (registered in mmdet)
from .segmentors import SoMAEncoderDecoder

__all__ = ["FoundationViT", "DINOv2", "DINOv3", "EVA02", "SoMAEncoderDecoder", "ReinMask2FormerHead"]
