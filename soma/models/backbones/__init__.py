"""ViT foundation-model backbones, registered in mmseg's and mmdet's ``MODELS``."""
from .dinov2 import DINOv2
from .dinov3 import DINOv3
from .eva02 import EVA02
from .foundation_vit import FoundationViT, resize_pyramid

__all__ = ["FoundationViT", "DINOv2", "DINOv3", "EVA02", "resize_pyramid"]
