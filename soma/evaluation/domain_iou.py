"""Per-domain semantic-segmentation metrics from one test run over several datasets.

Each sample's ``domain`` (set by :class:`soma.datasets.DGSegDataset`) picks the confusion matrix it is added
to. Every image keeps its own ``num_classes²`` counts until the end (2.9 kB for 19 classes): mmengine gathers
per-sample results across processes and drops the samples its sampler repeated to even out the processes
(``DefaultSampler(round_up=True)``), so each image is counted once for any number of processes. Results:
``<domain>/mIoU``, ``<domain>/mAcc``, ``<domain>/aAcc`` for each domain and group, and ``mean/<metric>``, the
mean over the domains in ``mean_over`` (default: all of them). Per-class IoU/Acc tables go to the log and,
with everything else, to ``output_file`` (JSON).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmseg.registry import METRICS
from prettytable import PrettyTable

from soma.utils import ConfigError, write_text_atomic

SUMMARY_METRICS = ("aAcc", "mIoU", "mAcc")


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``num_classes²`` int64 counts: row = ground-truth class, column = predicted class (ignored pixels dropped).

    Ground-truth ids outside ``[0, num_classes)`` other than ``ignore_index`` are an error: they mean the labels
    were not converted to trainIds. Predicted ids outside ``[0, num_classes)`` are an error too: they mean the
    model's head has more classes than the dataset, and ``label * num_classes + pred`` would count them in
    another class's cell (a prediction of id 20 on 19 classes scored as a correct class 0).
    """
    label = label.reshape(-1).long()
    pred = pred.reshape(-1).long()
    if label.numel() != pred.numel():
        raise ValueError(f"the prediction has {pred.numel()} pixels but the label map {label.numel()}: they must "
                         "have the same size.")
    valid = label != ignore_index
    label, pred = label[valid], pred[valid]
    if label.numel() and (label.min() < 0 or label.max() >= num_classes):
        bad = sorted(set(label[(label < 0) | (label >= num_classes)].unique().tolist()))[:8]
        raise ValueError(f"ground-truth ids {bad} are outside the {num_classes} classes and not ignore_index "
                         f"{ignore_index}; convert the labels to trainIds (tools/convert_datasets/).")
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        bad = sorted(set(pred[(pred < 0) | (pred >= num_classes)].unique().tolist()))[:8]
        raise ConfigError(f"predicted ids {bad} are outside the dataset's {num_classes} classes: the model's head "
                          f"predicts more classes than the dataset has; set the head's num_classes to "
                          f"{num_classes} (or evaluate on the dataset it was trained for).")
    return torch.bincount(label * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(confusion: np.ndarray) -> dict[str, Any]:
    """aAcc, mIoU, mAcc (percent) and per-class IoU/Acc from a confusion matrix.

    A class that is neither in the ground truth nor predicted has no IoU (NaN) and is left out of the means,
    as in mmseg's ``IoUMetric``; a class predicted but absent from the ground truth has IoU 0.
    """
    confusion = confusion.astype(np.float64)
    true_positive = np.diag(confusion)
    label_area, pred_area = confusion.sum(1), confusion.sum(0)
    union = label_area + pred_area - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        acc = np.where(label_area > 0, true_positive / label_area, np.nan)
    total = confusion.sum()

    def mean(values: np.ndarray) -> float:
        return float(np.nanmean(values)) * 100 if np.isfinite(values).any() else math.nan

    return dict(aAcc=float(true_positive.sum() / total) * 100 if total else math.nan, mIoU=mean(iou),
                mAcc=mean(acc), IoU=(iou * 100).tolist(), Acc=(acc * 100).tolist(), pixels=int(total))


@METRICS.register_module()
class DomainIoUMetric(BaseMetric):
    """mIoU/mAcc/aAcc per domain (the dataset each sample came from) and their mean.

    Args:
        ignore_index: label value that is not scored.
        mean_over: domains averaged into ``mean/...``; ``None`` averages every domain seen (not groups).
        groups: extra results that pool the pixels of several domains, e.g.
            ``dict(acdc=["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"])``.
        output_file: a JSON file for all numbers, per-class ones included (written by the main process).
        extra_info: recorded in ``output_file`` as is (tools/test.py records test resolution and TTA).
        collect_device: ``"cpu"`` or ``"gpu"``, for gathering across processes.
        prefix: prefix of the result keys (``"<prefix>/<domain>/mIoU"``); none by default.
    """

    default_prefix = None

    def __init__(self, ignore_index: int = 255, mean_over: Sequence[str] | None = None,
                 groups: dict[str, Sequence[str]] | None = None, output_file: str | None = None,
                 extra_info: dict[str, Any] | None = None, collect_device: str = "cpu", prefix: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        self.ignore_index = ignore_index
        self.mean_over = tuple(mean_over) if mean_over is not None else None
        self.groups = {name: tuple(members) for name, members in (groups or {}).items()}
        self.output_file = output_file
        self.extra_info = dict(extra_info or {})

    @property
    def num_classes(self) -> int:
        return len(self.dataset_meta["classes"])

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        # One result per image, (domain, confusion matrix): mmengine's collect_results orders them by dataset
        # index and cuts the list at the dataset size, which drops the samples the sampler padded with.
        for sample in data_samples:
            domain = sample.get("domain")
            if domain is None:
                raise KeyError("data sample has no 'domain': use a soma.datasets.DGSegDataset (or subclass) and "
                               "add 'domain' to PackSegInputs' meta_keys (soma.datasets.DOMAIN_META_KEYS).")
            pred = sample["pred_sem_seg"]["data"].squeeze()
            label = sample["gt_sem_seg"]["data"].squeeze().to(pred.device)
            if pred.shape != label.shape:
                raise ValueError(f"label map '{sample.get('seg_map_path', '?')}' is {tuple(label.shape)} but the "
                                 f"prediction for its image '{sample.get('img_path', '?')}' is {tuple(pred.shape)}: "
                                 "a label map must have its image's size (is it the right file?).")
            counts = confusion_matrix(pred, label, self.num_classes, self.ignore_index).cpu().numpy()
            self.results.append((domain, counts))

    def compute_metrics(self, results: list) -> dict[str, float]:
        confusions: dict[str, np.ndarray] = {}
        images: dict[str, int] = {}
        for domain, counts in results:
            confusions[domain] = confusions.get(domain, 0) + counts
            images[domain] = images.get(domain, 0) + 1
        domains = sorted(confusions)
        for name, members in self.groups.items():
            present = [m for m in members if m in confusions]
            if present:
                confusions[name] = sum(confusions[m] for m in present)
                images[name] = sum(images[m] for m in present)
        mean_over = self.mean_over if self.mean_over is not None else tuple(domains)
        unknown = [d for d in mean_over if d not in confusions]
        if unknown:
            raise KeyError(f"`mean_over` names domains {unknown} that the test set does not have; it has {domains}.")
        report = {name: scores(matrix) for name, matrix in confusions.items()}
        metrics: dict[str, float] = {}
        for name, result in report.items():
            for key in SUMMARY_METRICS:
                metrics[f"{name}/{key}"] = round(result[key], 2)
        for key in SUMMARY_METRICS:
            metrics[f"mean/{key}"] = round(float(np.mean([report[d][key] for d in mean_over])), 2)
        self._log_tables(report, images)
        if self.output_file and is_main_process():
            classes = list(self.dataset_meta["classes"])
            document = dict(metrics=metrics, mean_over=list(mean_over), images=images, classes=classes,
                            per_class={name: dict(IoU=dict(zip(classes, r["IoU"])), Acc=dict(zip(classes, r["Acc"])))
                                       for name, r in report.items()},
                            **self.extra_info)
            write_text_atomic(self.output_file, json.dumps(document, indent=2, allow_nan=True))
        return metrics

    def _log_tables(self, report: dict[str, dict], images: dict[str, int]) -> None:
        classes = self.dataset_meta["classes"]
        for name, result in report.items():
            table = PrettyTable(["Class", "IoU", "Acc"])
            for index, class_name in enumerate(classes):
                iou, acc = result["IoU"][index], result["Acc"][index]
                if math.isnan(iou) and math.isnan(acc):
                    continue  # neither in the ground truth nor predicted
                table.add_row([class_name, f"{iou:.2f}", f"{acc:.2f}"])
            print_log(f"per-class results on '{name}' ({images[name]} images, mIoU {result['mIoU']:.2f}):\n"
                      f"{table.get_string()}", logger="current")
