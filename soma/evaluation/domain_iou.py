"""Per-domain semantic-segmentation metrics from one test run over several datasets.

:class:`DomainIoUMetric` is mmseg's ``IoUMetric`` grouped by domain: each sample's ``domain`` (its data sample's
metainfo, set by :class:`soma.datasets.DGSegDataset`) picks the domain the image's per-class areas count for. The
areas (``IoUMetric.intersect_and_union``), the scores (``IoUMetric.total_area_to_metrics``: ``iou_metrics``
``mIoU``/``mDice``/``mFscore``, ``nan_to_num``, ``beta``) and the prediction files (``output_dir``, ``format_only``:
one ``<image name>.png`` of trainIds per image) are mmseg's. Every image keeps its own areas until the end: mmengine
gathers per-sample results across processes and drops the samples its sampler repeated to even out the processes
(``DefaultSampler(round_up=True)``), so each image is counted once for any number of processes.

Results: ``<domain>/<metric>`` for each domain and group (``aAcc``, ``mIoU``, ``mAcc``; ``mDice``; ``mFscore``,
``mPrecision``, ``mRecall``, as ``iou_metrics`` asks) and ``mean/<metric>``, the mean over the domains in
``mean_over`` (default: all of them; configs leave source or auxiliary domains out). Per-class tables go to the
log and, with everything else, to ``output_file`` (JSON).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS
from prettytable import PrettyTable

from soma.utils import ConfigError, write_text_atomic

IOU_METRICS = ("mIoU", "mDice", "mFscore")  # what mmseg's IoUMetric computes


def check_class_ids(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = 255) -> None:
    """Refuse ids outside ``[0, num_classes)``, which mmseg's per-class histograms would drop without a word.

    A ground-truth id other than ``ignore_index`` out there means the labels were not converted to trainIds; a
    predicted one (on a scored pixel) means the model's head has more classes than the dataset.
    """
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


def _summary(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """mmseg's summary of its per-class scores, in percent: ``aAcc`` and the class averages ``mIoU``, ``mAcc``, ...
    (NaN classes left out, as mmseg's ``nanmean``; NaN without any class)."""
    def class_average(values: np.ndarray) -> float:
        return float(np.nanmean(values)) * 100 if np.isfinite(values).any() else math.nan

    return {key if key == "aAcc" else f"m{key}": float(values) * 100 if key == "aAcc" else class_average(values)
            for key, values in scores.items()}


@METRICS.register_module()
class DomainIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` per domain (the dataset each sample came from), per group of domains, and the mean.

    Args:
        ignore_index: label value that is not scored.
        iou_metrics: any of ``"mIoU"`` (with mAcc), ``"mDice"``, ``"mFscore"`` (with mPrecision, mRecall).
        nan_to_num: mmseg's: the score of a class without one (neither in the ground truth nor predicted);
            ``None`` leaves such classes out of the class averages.
        beta: mmseg's F-score weight of recall.
        mean_over: domains averaged into ``mean/...``; ``None`` averages every domain seen (not groups).
        groups: extra results that pool the pixels of several domains, e.g.
            ``dict(acdc=["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"])``.
        output_file: a JSON file for all numbers, per-class ones included (written by the main process).
        extra_info: recorded in ``output_file`` as is (tools/test.py records test resolution and TTA).
        collect_device: ``"cpu"`` or ``"gpu"``, for gathering across processes.
        output_dir: mmseg's: write each prediction as ``<image name>.png`` (trainIds) into this folder.
        format_only: mmseg's: only write the predictions (test sets without labels); no scores.
        prefix: prefix of the result keys (``"<prefix>/<domain>/mIoU"``); none by default.
    """

    def __init__(self, ignore_index: int = 255, iou_metrics: Sequence[str] | str = ("mIoU",),
                 nan_to_num: int | None = None, beta: int = 1, mean_over: Sequence[str] | None = None,
                 groups: dict[str, Sequence[str]] | None = None, output_file: str | None = None,
                 extra_info: dict[str, Any] | None = None, collect_device: str = "cpu", output_dir: str | None = None,
                 format_only: bool = False, prefix: str | None = None) -> None:
        # No **kwargs: mmseg's IoUMetric drops unknown ones, so a misspelt option would change nothing silently.
        iou_metrics = [iou_metrics] if isinstance(iou_metrics, str) else list(iou_metrics)
        unknown = [name for name in iou_metrics if name not in IOU_METRICS]
        if unknown or not iou_metrics:
            raise ValueError(f"`iou_metrics` must name some of {list(IOU_METRICS)}, got {iou_metrics}.")
        if format_only and not output_dir:
            raise ValueError("`format_only=True` only writes the predictions, to `output_dir`: set `output_dir`.")
        super().__init__(ignore_index=ignore_index, iou_metrics=iou_metrics, nan_to_num=nan_to_num, beta=beta,
                         collect_device=collect_device, output_dir=output_dir, format_only=format_only,
                         prefix=prefix)
        self.mean_over = tuple(mean_over) if mean_over is not None else None
        self.groups = {name: tuple(members) for name, members in (groups or {}).items()}
        self.output_file = output_file
        self.extra_info = dict(extra_info or {})

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """One result per image: its domain and mmseg's per-class areas (only the image's name with
        ``format_only``); with ``output_dir``, mmseg writes its prediction."""
        num_classes = len(self.dataset_meta["classes"])
        for sample in data_samples:
            if self.format_only:  # test sets without labels: nothing to score
                super().process(data_batch, [sample])
                self.results.append(sample["img_path"])
                continue
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
            check_class_ids(pred, label, num_classes, self.ignore_index)
            super().process(data_batch, [sample])
            self.results[-1] = (domain, *self.results[-1])

    def compute_metrics(self, results: list) -> dict[str, float]:
        """The scores of each domain and group, and their mean over ``mean_over`` (percent, rounded to 0.01)."""
        if self.format_only:
            print_log(f"wrote the predictions of {len(results)} images to '{self.output_dir}'", logger="current")
            return {}
        areas: dict[str, list] = {}
        for domain, *image_areas in results:
            areas.setdefault(domain, []).append(image_areas)
        domains = sorted(areas)
        for name, members in self.groups.items():
            present = [m for m in members if m in areas]
            if present:
                areas[name] = [image for m in present for image in areas[m]]
        mean_over = self.mean_over if self.mean_over is not None else tuple(domains)
        unknown = [d for d in mean_over if d not in areas]
        if unknown:
            raise KeyError(f"`mean_over` names domains {unknown} that the test set does not have; it has {domains}.")
        per_class = {name: self._per_class_scores(image_areas) for name, image_areas in areas.items()}
        summary = {name: _summary(scores) for name, scores in per_class.items()}
        metrics: dict[str, float] = {}
        for name, scores in summary.items():
            metrics.update({f"{name}/{key}": round(value, 2) for key, value in scores.items()})
        for key in next(iter(summary.values()), {}):
            metrics[f"mean/{key}"] = round(float(np.mean([summary[d][key] for d in mean_over])), 2)
        images = {name: len(image_areas) for name, image_areas in areas.items()}
        self._log_tables(per_class, summary, images)
        if self.output_file and is_main_process():
            classes = list(self.dataset_meta["classes"])
            document = dict(metrics=metrics, mean_over=list(mean_over), images=images, classes=classes,
                            per_class={name: {key: dict(zip(classes, (values * 100).tolist()))
                                              for key, values in scores.items() if key != "aAcc"}
                                       for name, scores in per_class.items()},
                            **self.extra_info)
            write_text_atomic(self.output_file, json.dumps(document, indent=2, allow_nan=True))
        return metrics

    def _per_class_scores(self, image_areas: list) -> dict[str, np.ndarray]:
        """mmseg's scores (fractions; NaN where undefined) of the images' pooled areas. Summed in float64: a float32
        sum of many images' pixel counts would drop counts past 2**24."""
        totals = [torch.stack(column).double().sum(0) for column in zip(*image_areas)]
        return self.total_area_to_metrics(*totals, self.metrics, self.nan_to_num, self.beta)

    def _log_tables(self, per_class: dict[str, dict], summary: dict[str, dict], images: dict[str, int]) -> None:
        classes = self.dataset_meta["classes"]
        for name, scores in per_class.items():
            columns = [key for key in scores if key != "aAcc"]
            table = PrettyTable(["Class", *columns])
            for index, class_name in enumerate(classes):
                row = [float(scores[key][index]) * 100 for key in columns]
                if all(math.isnan(value) for value in row):
                    continue  # neither in the ground truth nor predicted
                table.add_row([class_name, *(f"{value:.2f}" for value in row)])
            numbers = ", ".join(f"{key} {value:.2f}" for key, value in summary[name].items())
            print_log(f"per-class results on '{name}' ({images[name]} images; {numbers}):\n{table.get_string()}",
                      logger="current")
