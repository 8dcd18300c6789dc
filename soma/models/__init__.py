"""Backbones and model glue registered in mmseg and mmdet."""
from .builder import build_model, build_model_from_cfg, head_state
from .backbones import DINOv2, DINOv3, EVA02, FoundationViT
from .decode_heads import ReinMask2FormerHead
from .detectors import CoDINO, CoDINOHead  # noqa: F401  (registered in mmdet)
from .segmentors import SoMAEncoderDecoder

__all__ = ["build_model", "build_model_from_cfg", "head_state", "FoundationViT", "DINOv2", "DINOv3", "EVA02",
           "SoMAEncoderDecoder", "ReinMask2FormerHead"]
