"""Detectors registered in mmdet: Co-DINO (Co-DETR's hybrid assignments on DINO) and its heads."""
from .co_aux_heads import AuxPositives, CoATSSHead, CoStandardRoIHead
from .co_dino import CoDINO
from .co_dino_head import CoDINOHead

__all__ = ["AuxPositives", "CoATSSHead", "CoDINO", "CoDINOHead", "CoStandardRoIHead"]
