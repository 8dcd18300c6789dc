"""Backbones and model glue registered in mmseg and mmdet."""
from .backbones import DINOv2, DINOv3, EVA02, FoundationViT
from .segmentors import SoMAEncoderDecoder

__all__ = ["FoundationViT", "DINOv2", "DINOv3", "EVA02", "SoMAEncoderDecoder"]
