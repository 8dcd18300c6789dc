"""DomainIoUMetric: hand-computed IoUs, agreement with mmseg's IoUMetric, per-domain keys, groups, errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mmseg.evaluation import IoUMetric

from soma.evaluation import DomainIoUMetric, confusion_matrix, scores

CLASSES = ("a", "b", "c")


def sample(pred, label, domain: str | None = "citys") -> dict:
    result = dict(pred_sem_seg=dict(data=torch.tensor(pred)[None]), gt_sem_seg=dict(data=torch.tensor(label)[None]))
    if domain is not None:
        result["domain"] = domain
    return result


def metric(**kwargs) -> DomainIoUMetric:
    m = DomainIoUMetric(**kwargs)
    m.dataset_meta = dict(classes=CLASSES)
    return m


PRED = [[0, 0, 1], [1, 2, 2]]
LABEL = [[0, 1, 1], [1, 2, 255]]


def test_hand_computed_scores():
    confusion = confusion_matrix(torch.tensor(PRED), torch.tensor(LABEL), 3).numpy()
    # valid pixels: (0,0) (1,0) (1,1) (1,1) (2,2) -> rows = truth, columns = prediction
    assert confusion.tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 1]]
    result = scores(confusion)
    # IoU a = 1/(1+2-1) = 0.5, b = 2/(3+2-2) = 2/3, c = 1/1
    assert result["IoU"] == pytest.approx([50.0, 200 / 3, 100.0])
    assert result["mIoU"] == pytest.approx((50 + 200 / 3 + 100) / 3)
    assert result["aAcc"] == pytest.approx(80.0)
    assert result["mAcc"] == pytest.approx((100 + 200 / 3 + 100) / 3)


def test_absent_class_is_left_out_and_false_positive_counts_zero():
    result = scores(confusion_matrix(torch.tensor([[0, 0]]), torch.tensor([[0, 0]]), 3).numpy())
    assert result["mIoU"] == 100.0 and math.isnan(result["IoU"][1])
    result = scores(confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]), 3).numpy())
    assert result["IoU"][1] == 0.0 and result["mIoU"] == pytest.approx(25.0)


def test_agrees_with_mmseg_iou_metric():
    rng = np.random.default_rng(0)
    ours, reference = metric(), IoUMetric()
    reference.dataset_meta = dict(classes=CLASSES)
    for _ in range(5):
        pred = rng.integers(0, 3, (8, 9))
        label = rng.integers(0, 3, (8, 9))
        label[rng.random((8, 9)) < 0.2] = 255
        batch = [sample(pred.tolist(), label.tolist())]
        ours.process({}, batch)
        reference.process({}, batch)
    expected = reference.compute_metrics(reference.results)
    got = ours.compute_metrics(ours.results)
    for key in ("aAcc", "mIoU", "mAcc"):
        assert got[f"citys/{key}"] == pytest.approx(expected[key], abs=0.01)


def test_domains_groups_mean_and_json(tmp_path):
    out = tmp_path / "per_class.json"
    m = metric(groups=dict(both=["x", "y"]), mean_over=["x", "y"], output_file=str(out),
               extra_info=dict(test_resolution=[(64, 64)], tta=False))
    m.process({}, [sample([[0, 0]], [[0, 0]], "x"), sample([[1, 1]], [[0, 0]], "y")])
    results = m.compute_metrics(m.results)
    assert results["x/mIoU"] == 100.0
    assert results["y/mIoU"] == 0.0  # class a missed, class b predicted but absent
    assert results["mean/mIoU"] == 50.0
    assert results["both/aAcc"] == 50.0  # pooled pixels, not the mean of the two
    document = json.loads(out.read_text())
    assert document["images"] == dict(x=1, y=1, both=2)
    assert document["per_class"]["x"]["IoU"]["a"] == 100.0
    assert document["tta"] is False and document["test_resolution"] == [[64, 64]]


def test_accumulates_in_one_matrix_per_domain():
    m = metric()
    for _ in range(10):
        m.process({}, [sample(PRED, LABEL, "x"), sample(PRED, LABEL, "y")])
    assert len(m.results) == 1 and set(m.results[0]) == {"x", "y"}
    assert m.results[0]["x"][0].shape == (3, 3) and m.results[0]["x"][1] == 10


def test_errors_say_what_to_do():
    with pytest.raises(KeyError, match="meta_keys"):
        metric().process({}, [sample(PRED, LABEL, domain=None)])
    with pytest.raises(ValueError, match="trainIds"):
        metric().process({}, [sample(PRED, [[0, 7, 1], [1, 2, 255]])])
    m = metric(mean_over=["nowhere"])
    m.process({}, [sample(PRED, LABEL)])
    with pytest.raises(KeyError, match="nowhere"):
        m.compute_metrics(m.results)
