"""Domain-aware segmentation datasets (registered in mmseg's ``DATASETS``)."""
from .base import DOMAIN_META_KEYS, DGCityscapesDataset, DGSegDataset, check_label_channels
from .domain import DomainDatasetMixin, tag_domain
from .dwd import DWD_DOMAINS, DWDDataset
from .benchmarks import (ACDC_CONDITIONS, DGACDCDataset, DGBDD100KDataset, DGGTA5Dataset, DGMapillaryDataset,
                         DGSynthiaDataset, DGUrbanSynDataset)

__all__ = ["DGSegDataset", "DGCityscapesDataset", "DGGTA5Dataset", "DGSynthiaDataset", "DGUrbanSynDataset",
           "DGBDD100KDataset", "DGMapillaryDataset", "DGACDCDataset", "ACDC_CONDITIONS", "DOMAIN_META_KEYS",
           "DWDDataset", "DWD_DOMAINS", "DomainDatasetMixin", "tag_domain", "check_label_channels"]
