"""Metrics registered in mmseg's ``METRICS``."""
from .domain_iou import DomainIoUMetric, confusion_matrix, scores
from .voc_domain_map import DomainVOCMetric

__all__ = ["DomainIoUMetric", "confusion_matrix", "scores", "DomainVOCMetric"]
