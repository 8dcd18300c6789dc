"""Domain-aware segmentation datasets (registered in mmseg's ``DATASETS``)."""
from .base import DOMAIN_META_KEYS, DGCityscapesDataset, DGSegDataset

__all__ = ["DGSegDataset", "DGCityscapesDataset", "DOMAIN_META_KEYS"]
