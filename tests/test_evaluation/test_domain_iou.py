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


def test_padded_samples_of_the_sampler_are_not_counted():
    """DefaultSampler(round_up=True) repeats the first samples so that every process gets as many; mmengine's
    collect_results cuts per-sample results at the dataset size, which only works with one result per image."""
    rng = np.random.default_rng(0)
    images = [sample(rng.integers(0, 3, (4, 5)).tolist(), rng.integers(0, 3, (4, 5)).tolist()) for _ in range(4)]
    exact, padded = metric(), metric()
    exact.process({}, images)
    padded.process({}, images + images[:2])  # 4 images over 3 processes: 6 samples, 2 of them repeats
    assert len(padded.results) == 6 and padded.results[0][1].shape == (3, 3)
    assert padded.evaluate(4) == exact.evaluate(4)


def test_predictions_outside_the_classes_are_refused():
    """`label * K + pred` would count a prediction of id K+1 in another class's cell: 100 mIoU for all-wrong."""
    with pytest.raises(ValueError, match=r"predicted ids \[20\] are outside the dataset's 19 classes.*num_classes"):
        scores(confusion_matrix(torch.full((100,), 20), torch.zeros(100, dtype=torch.long), 19).numpy())
    with pytest.raises(ValueError, match=r"predicted ids \[-1\]"):
        confusion_matrix(torch.tensor([-1, 0]), torch.tensor([0, 0]), 3)
    # Predictions on ignored pixels are not scored, whatever they are.
    assert confusion_matrix(torch.tensor([7, 0]), torch.tensor([255, 0]), 3).sum() == 1


def test_label_map_of_another_size_names_the_file():
    m = metric()
    bad = sample(PRED, [[0, 1], [1, 2]])
    bad.update(seg_map_path="data/x/0001_labelTrainIds.png", img_path="data/x/0001.png")
    with pytest.raises(ValueError, match=r"label map 'data/x/0001_labelTrainIds.png' is \(2, 2\).*'data/x/0001.png'"):
        m.process({}, [bad])


def test_errors_say_what_to_do():
    with pytest.raises(KeyError, match="meta_keys"):
        metric().process({}, [sample(PRED, LABEL, domain=None)])
    with pytest.raises(ValueError, match="trainIds"):
        metric().process({}, [sample(PRED, [[0, 7, 1], [1, 2, 255]])])
    m = metric(mean_over=["nowhere"])
    m.process({}, [sample(PRED, LABEL)])
    with pytest.raises(KeyError, match="nowhere"):
        m.compute_metrics(m.results)
