"""Metrics registered in mmseg's ``METRICS``."""
from .domain_iou import DomainIoUMetric, confusion_matrix, scores

__all__ = ["DomainIoUMetric", "confusion_matrix", "scores"]
