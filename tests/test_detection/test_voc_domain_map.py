"""DomainVOCMetric: hand-computed 11-point AP, agreement with mmdet's VOCMetric, per-domain keys, JSON, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soma.evaluation import DomainVOCMetric

CLASSES = ("car", "person", "bus")


def sample(gt_boxes, gt_labels, boxes, scores, labels, domain: str | None = "a", ignored=((), ())) -> dict:
    def box_tensor(values):
        return torch.tensor(values, dtype=torch.float32).reshape(-1, 4)

    result = dict(
        gt_instances=dict(bboxes=box_tensor(gt_boxes), labels=torch.tensor(gt_labels, dtype=torch.long)),
        ignored_instances=dict(bboxes=box_tensor(ignored[0]), labels=torch.tensor(ignored[1], dtype=torch.long)),
        pred_instances=dict(bboxes=box_tensor(boxes), scores=torch.tensor(scores, dtype=torch.float32),
                            labels=torch.tensor(labels, dtype=torch.long)))
    if domain is not None:
        result["domain"] = domain
    return result


def metric(**kwargs) -> DomainVOCMetric:
    m = DomainVOCMetric(nproc=1, **kwargs)
    m.dataset_meta = dict(classes=CLASSES)
    return m


CAR_A, CAR_B, CAR_C = [10, 10, 29, 29], [40, 40, 59, 59], [5, 30, 24, 49]
# Domain "a". car: 3 ground-truth boxes over two images; detections by score: hit, miss, hit, duplicate.
#   cumulative TP 1 1 2 2, FP 0 1 1 2 -> recall 1/3 1/3 2/3 2/3, precision 1 1/2 2/3 1/2
#   11-point AP = (4 x 1 [r >= 0, .1, .2, .3] + 3 x 2/3 [r >= .4, .5, .6] + 4 x 0) / 11 = 6/11
# person: one ground-truth box, one detection with IoU < 0.5 -> AP 0. bus: no ground truth -> no AP, not averaged.
HAND = [
    sample([CAR_A, CAR_B, [0, 40, 9, 63]], [0, 0, 1],
           [CAR_A, [30, 0, 49, 19], CAR_A, [0, 40, 9, 48], [20, 20, 30, 30]], [0.9, 0.8, 0.6, 0.95, 0.5],
           [0, 0, 0, 1, 2]),
    sample([CAR_C], [0], [CAR_C], [0.7], [0]),
]


def test_hand_computed_average_precision():
    m = metric()
    m.process({}, HAND)
    metrics = m.compute_metrics(m.results)
    assert metrics["a/mAP"] == pytest.approx(round(100 * 6 / 11 / 2, 2))
    assert set(metrics) == {"a/mAP", "mean/mAP"} and metrics["mean/mAP"] == metrics["a/mAP"]


def test_per_domain_results_mean_and_json(tmp_path):
    perfect = [sample([CAR_A], [0], [CAR_A], [0.9], [0], domain="b"),
               sample([CAR_B, CAR_C], [0, 1], [CAR_B, CAR_C], [0.8, 0.7], [0, 1], domain="b")]
    m = metric(mean_over=["b"], output_file=str(tmp_path / "per_class.json"), extra_info=dict(tta=False))
    m.process({}, HAND[:1] + perfect[:1])
    m.process({}, HAND[1:] + perfect[1:])  # domains interleaved across batches
    metrics = m.compute_metrics(m.results)
    assert metrics == {"a/mAP": round(100 * 3 / 11, 2), "b/mAP": 100.0, "mean/mAP": 100.0}
    document = json.loads((tmp_path / "per_class.json").read_text())
    assert document["metrics"] == metrics and document["tta"] is False and document["mean_over"] == ["b"]
    assert document["images"] == {"a": 2, "b": 2} and document["eval_mode"] == "11points"
    ap = document["per_class"]["a"]["AP"]
    assert ap["car"] == pytest.approx(100 * 6 / 11, abs=1e-4) and ap["person"] == 0.0 and ap["bus"] is None
    assert document["per_class"]["a"]["num_gts"] == {"car": 3, "person": 1, "bus": 0}

    both = metric()
    both.process({}, HAND + perfect)
    assert both.compute_metrics(both.results)["mean/mAP"] == pytest.approx((100 * 3 / 11 + 100) / 2, abs=0.01)


def random_samples(rng: np.random.Generator, count: int, domain: str) -> list[dict]:
    samples = []
    for _ in range(count):
        gt = rng.uniform(0, 60, (int(rng.integers(1, 5)), 2))
        gt_boxes = np.hstack([gt, gt + rng.uniform(5, 30, gt.shape)])
        gt_labels = rng.integers(0, 3, len(gt_boxes))
        jitter = rng.normal(0, 3, (len(gt_boxes), 4))
        noise = rng.uniform(0, 60, (3, 2))
        boxes = np.vstack([gt_boxes + jitter, np.hstack([noise, noise + 15])])
        labels = np.concatenate([np.where(rng.random(len(gt_boxes)) < 0.8, gt_labels, (gt_labels + 1) % 3),
                                 rng.integers(0, 3, 3)])
        ignored = (gt_boxes[:1] + 1, gt_labels[:1]) if rng.random() < 0.3 else ((), ())  # a "difficult" box
        samples.append(sample(gt_boxes.tolist(), gt_labels.tolist(), boxes.tolist(), rng.random(len(boxes)).tolist(),
                              labels.tolist(), domain=domain, ignored=ignored))
    return samples


@pytest.mark.parametrize("eval_mode", ["11points", "area"])
def test_agrees_with_mmdet_voc_metric_per_domain(eval_mode):
    from mmdet.evaluation import VOCMetric

    rng = np.random.default_rng(0)
    samples = {d: random_samples(rng, 12, d) for d in ("fog", "night")}
    ours = metric(eval_mode=eval_mode)
    ours.process({}, samples["fog"] + samples["night"])
    results = ours.compute_metrics(ours.results)
    for domain, domain_samples in samples.items():
        reference = VOCMetric(eval_mode=eval_mode)
        reference.dataset_meta = dict(classes=CLASSES, dataset_type="VOC2007" if eval_mode == "11points" else None)
        reference.process({}, domain_samples)
        expected = reference.compute_metrics(reference.results)["mAP"]
        assert 0.05 < expected < 0.95  # neither trivial nor empty
        assert results[f"{domain}/mAP"] == pytest.approx(100 * expected, abs=0.006)


def test_errors():
    m = metric()
    with pytest.raises(KeyError, match="no 'domain'.*meta_keys"):
        m.process({}, [sample([CAR_A], [0], [CAR_A], [0.9], [0], domain=None)])
    m = metric(mean_over=["rain"])
    m.process({}, HAND)
    with pytest.raises(KeyError, match=r"`mean_over` names domains \['rain'\].*\['a'\]"):
        m.compute_metrics(m.results)
    with pytest.raises(ValueError, match="`eval_mode`"):
        DomainVOCMetric(eval_mode="101points")
