"""Metrics registered in mmseg's ``METRICS``."""
from .domain_iou import DomainIoUMetric, check_class_ids
from .voc_domain_map import DomainVOCMetric

__all__ = ["DomainIoUMetric", "check_class_ids", "DomainVOCMetric"]
