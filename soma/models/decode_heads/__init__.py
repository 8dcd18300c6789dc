"""Decode heads registered in mmseg."""
from .rein_mask2former_head import ReinMask2FormerHead

__all__ = ["ReinMask2FormerHead"]
