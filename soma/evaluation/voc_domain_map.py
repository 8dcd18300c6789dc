"""Per-domain Pascal VOC mAP from one test run over several detection datasets.

:class:`DomainVOCMetric` is mmdet's ``VOCMetric`` grouped by domain: each sample's ``domain`` (set by
:class:`soma.datasets.DWDDataset`) says which domain its ground truth and detections (kept as mmdet's ``process``
keeps them) are scored with. AP itself comes from mmdet's ``eval_map`` (the VOC protocol: IoU 0.5, difficult
boxes ignored, legacy ``+1`` box sizes, 11-point interpolation by default), exactly as mmdet's ``VOCMetric``
calls it, once per domain. Results: ``<domain>/mAP`` for each domain and ``mean/mAP`` over ``mean_over``
(default: every domain), in percent. Per-class AP tables go to the log and, with everything else, to
``output_file`` (JSON).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmdet.evaluation import VOCMetric
from mmdet.evaluation.functional import eval_map
from mmdet.registry import METRICS
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger, print_log

from soma.utils import write_text_atomic


@METRICS.register_module()
class DomainVOCMetric(VOCMetric):
    """VOC mAP and per-class AP per domain (the dataset each sample came from) and their mean.

    Args:
        iou_thr: IoU of a true positive. Default: 0.5 (mAP@0.5).
        eval_mode: ``"11points"`` (VOC2007, the DWD protocol) or ``"area"`` (VOC2012).
        mean_over: domains averaged into ``mean/mAP``; ``None`` averages every domain seen. DWD configs average
            the four unseen domains and report ``daytime_clear`` (the source's test split) on its own.
        output_file: a JSON file for all numbers, per-class AP included (written by the main process).
        extra_info: recorded in ``output_file`` as is (tools/test.py records test resolution and TTA).
        nproc: processes ``eval_map`` uses to match detections to ground truth.
        collect_device: ``"cpu"`` or ``"gpu"``, for gathering across processes.
        prefix: prefix of the result keys (``"<prefix>/<domain>/mAP"``); none by default.
    """

    default_prefix = None

    def __init__(self, iou_thr: float = 0.5, eval_mode: str = "11points", mean_over: Sequence[str] | None = None,
                 output_file: str | None = None, extra_info: dict[str, Any] | None = None, nproc: int = 4,
                 collect_device: str = "cpu", prefix: str | None = None) -> None:
        if eval_mode not in ("11points", "area"):
            raise ValueError(f"`eval_mode` must be '11points' or 'area', got {eval_mode!r}.")
        if not 0 < iou_thr < 1:
            raise ValueError(f"`iou_thr` must be in (0, 1), got {iou_thr}.")
        if nproc < 1:
            raise ValueError(f"`nproc` must be a positive int, got {nproc}.")
        super().__init__(iou_thrs=float(iou_thr), eval_mode=eval_mode, collect_device=collect_device, prefix=prefix)
        self.iou_thr = iou_thr
        self.mean_over = tuple(mean_over) if mean_over is not None else None
        self.output_file = output_file
        self.extra_info = dict(extra_info or {})
        self.nproc = nproc

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """One result per image: its domain, and its ground truth and per-class detections as mmdet keeps them."""
        for sample in data_samples:
            domain = sample.get("domain")
            if domain is None:
                raise KeyError("data sample has no 'domain': use a soma.datasets.DWDDataset and add 'domain' to "
                               "PackDetInputs' meta_keys (soma.datasets.dwd.DET_DOMAIN_META_KEYS).")
            super().process(data_batch, [sample])
            self.results[-1] = (domain, *self.results[-1])

    def compute_metrics(self, results: list) -> dict[str, float]:
        """mAP per domain and their mean (percent); per-class AP to the log and ``output_file``."""
        by_domain: dict[str, tuple[list, list]] = {}
        for domain, annotation, detections in results:
            annotations, dets = by_domain.setdefault(domain, ([], []))
            annotations.append(annotation)
            dets.append(detections)
        domains = sorted(by_domain)
        mean_over = self.mean_over if self.mean_over is not None else tuple(domains)
        unknown = [d for d in mean_over if d not in by_domain]
        if unknown:
            raise KeyError(f"`mean_over` names domains {unknown} that the test set does not have; it has {domains}.")
        classes = list(self.dataset_meta["classes"])
        logger = MMLogger.get_current_instance()
        report: dict[str, dict[str, Any]] = {}
        for domain in domains:
            annotations, dets = by_domain[domain]
            print_log(f"VOC AP@{self.iou_thr} ({self.eval_mode}) on '{domain}' ({len(annotations)} images):",
                      logger="current")
            mean_ap, per_class = eval_map(dets, annotations, iou_thr=self.iou_thr, dataset=classes, logger=logger,
                                          eval_mode=self.eval_mode, use_legacy_coordinate=True, nproc=self.nproc)
            report[domain] = dict(
                mAP=float(mean_ap) * 100, images=len(annotations),
                # A class without ground truth in a domain has no AP (left out of that domain's mAP, as in eval_map).
                AP={name: float(r["ap"]) * 100 if r["num_gts"] > 0 else None for name, r in zip(classes, per_class)},
                num_gts={name: int(r["num_gts"]) for name, r in zip(classes, per_class)})
        metrics = {f"{domain}/mAP": round(report[domain]["mAP"], 2) for domain in domains}
        metrics["mean/mAP"] = round(float(np.mean([report[d]["mAP"] for d in mean_over])), 2)
        print_log("mAP per domain: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()), logger="current")
        if self.output_file and is_main_process():
            document = dict(metrics=metrics, mean_over=list(mean_over), iou_thr=self.iou_thr,
                            eval_mode=self.eval_mode, classes=classes,
                            images={d: report[d]["images"] for d in domains},
                            per_class={d: dict(AP=report[d]["AP"], num_gts=report[d]["num_gts"]) for d in domains},
                            **self.extra_info)
            write_text_atomic(self.output_file, json.dumps(document, indent=2))
        return metrics
