"""DomainIoUMetric: hand-computed IoUs, agreement with mmseg's IoUMetric (mIoU, mDice, mFscore per domain),
format_only, per-domain keys, groups, errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from mmseg.evaluation import IoUMetric
from PIL import Image

from soma.evaluation import DomainIoUMetric

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


def scored(batch: list[dict], tmp_path, **kwargs) -> tuple[dict, dict]:
    """The metric's results on ``batch`` and its JSON document (unrounded per-class scores)."""
    m = metric(output_file=str(tmp_path / "per_class.json"), **kwargs)
    m.process({}, batch)
    results = m.compute_metrics(m.results)
    return results, json.loads((tmp_path / "per_class.json").read_text())


def test_hand_computed_scores(tmp_path):
    # valid pixels (truth, prediction): (a,a) (b,a) (b,b) (b,b) (c,c)
    results, document = scored([sample(PRED, LABEL)], tmp_path)
    per_class = document["per_class"]["citys"]
    # IoU a = 1/(1+2-1) = 0.5, b = 2/(3+2-2) = 2/3, c = 1/1
    assert list(per_class["IoU"].values()) == pytest.approx([50.0, 200 / 3, 100.0])
    assert list(per_class["Acc"].values()) == pytest.approx([100.0, 200 / 3, 100.0])
    assert results["citys/mIoU"] == pytest.approx((50 + 200 / 3 + 100) / 3, abs=0.005)
    assert results["citys/aAcc"] == 80.0
    assert results["citys/mAcc"] == pytest.approx((100 + 200 / 3 + 100) / 3, abs=0.005)


def test_absent_class_is_left_out_and_false_positive_counts_zero(tmp_path):
    results, document = scored([sample([[0, 0]], [[0, 0]])], tmp_path)
    assert results["citys/mIoU"] == 100.0 and math.isnan(document["per_class"]["citys"]["IoU"]["b"])
    results, document = scored([sample([[0, 1]], [[0, 0]])], tmp_path)
    assert document["per_class"]["citys"]["IoU"]["b"] == 0.0 and results["citys/mIoU"] == 25.0
    # mmseg's nan_to_num: a class without a score counts as that number in the class average.
    results, _ = scored([sample([[0, 0]], [[0, 0]])], tmp_path, nan_to_num=0)
    assert results["citys/mIoU"] == pytest.approx(100 / 3, abs=0.005)


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


@pytest.mark.parametrize("beta", [1, 2])
def test_dice_and_fscore_per_domain_equal_mmseg_on_that_domain_alone(beta):
    rng = np.random.default_rng(beta)
    images = {"x": [], "y": []}
    for domain, absent in (("x", 2), ("y", None)):  # class c never in x's ground truth (and so NaN or 0 there)
        for _ in range(3):
            label = rng.integers(0, 3, (6, 7))
            if absent is not None:
                label[label == absent] = 255
            label[rng.random((6, 7)) < 0.2] = 255
            images[domain].append(sample(rng.integers(0, 3, (6, 7)).tolist(), label.tolist(), domain))
    names = ["mIoU", "mDice", "mFscore"]
    ours = metric(iou_metrics=names, beta=beta, mean_over=["x", "y"])
    ours.process({}, [image for pair in zip(images["x"], images["y"]) for image in pair])  # interleaved
    got = ours.compute_metrics(ours.results)
    for domain, samples in images.items():
        reference = IoUMetric(iou_metrics=names, beta=beta)
        reference.dataset_meta = dict(classes=CLASSES)
        reference.process({}, samples)
        expected = reference.compute_metrics(reference.results)
        assert set(expected) == {"aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall"}
        for key, value in expected.items():
            assert got[f"{domain}/{key}"] == pytest.approx(value, abs=0.01), (domain, key)
    assert got["mean/mFscore"] == pytest.approx((got["x/mFscore"] + got["y/mFscore"]) / 2, abs=0.01)
    assert got["x/mDice"] != got["y/mDice"]  # the domains are told apart


def test_format_only_writes_each_prediction_as_mmseg_does(tmp_path):
    """Test sets without labels (the ACDC test split): no ground truth, no scores, one trainId PNG per image named
    after the image, byte for byte what mmseg's IoUMetric writes."""
    rng = np.random.default_rng(0)
    names = ["GOPR0475_frame_000001_rgb_anon.png", "GOPR0351_frame_000002_rgb_anon.png"]
    batch = [dict(pred_sem_seg=dict(data=torch.from_numpy(rng.integers(0, 19, (1, 5, 6)))),
                  img_path=f"data/acdc/rgb_anon/fog/test/{name}") for name in names]
    ours = metric(format_only=True, output_dir=str(tmp_path / "ours"))
    ours.process({}, batch + batch[:1])  # a sampler's repeat of the first image is dropped by evaluate()
    assert ours.evaluate(2) == {}
    reference = IoUMetric(format_only=True, output_dir=str(tmp_path / "mmseg"))
    reference.dataset_meta = dict(classes=CLASSES)
    reference.process({}, batch)
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == sorted(names)
    for name, image in zip(names, batch):
        written = Image.open(tmp_path / "ours" / name)
        assert written.mode == "L"
        np.testing.assert_array_equal(np.asarray(written), image["pred_sem_seg"]["data"][0].numpy())
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "mmseg" / name).read_bytes()


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
    assert len(padded.results) == 6 and padded.results[0][0] == "citys"  # one (domain, areas...) per image
    assert padded.evaluate(4) == exact.evaluate(4)


def test_pooled_pixel_counts_stay_exact_past_float32(tmp_path):
    """mmseg's per-image areas are float32 (exact per image); summed in float32 over many images, counts past
    2**24 would be rounded. Three images of 2**23 + 1 correct pixels out of 2**23 + 3 in class a."""
    image = ("citys", *(torch.tensor([value, 0.0, 0.0]) for value in (2**23 + 1, 2**23 + 3, 2**23 + 1, 2**23 + 3)))
    m = metric(output_file=str(tmp_path / "per_class.json"))
    m.compute_metrics([image] * 3)
    accuracy = json.loads((tmp_path / "per_class.json").read_text())["per_class"]["citys"]["Acc"]["a"]
    assert accuracy == pytest.approx(100 * (3 * (2**23 + 1)) / (3 * (2**23 + 3)), rel=1e-12)


def test_predictions_outside_the_classes_are_refused():
    """mmseg's per-class histograms drop ids outside the classes: a head with more classes would lose its wrong
    predictions from the counts (and `label * K + pred` counting would put them in another class's cell)."""
    many = metric()
    many.dataset_meta = dict(classes=tuple(f"class {i}" for i in range(19)))
    with pytest.raises(ValueError, match=r"predicted ids \[20\] are outside the dataset's 19 classes.*num_classes"):
        many.process({}, [sample([[20] * 10], [[0] * 10])])
    with pytest.raises(ValueError, match=r"predicted ids \[-1\]"):
        metric().process({}, [sample([[-1, 0]], [[0, 0]])])
    # Predictions on ignored pixels are not scored, whatever they are.
    m = metric()
    m.process({}, [sample([[7, 0]], [[255, 0]])])
    assert m.compute_metrics(m.results)["citys/aAcc"] == 100.0


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
    with pytest.raises(ValueError, match="output_dir"):
        DomainIoUMetric(format_only=True)
    with pytest.raises(ValueError, match=r"iou_metrics.*mDice.*\['mIoU', 'mAP'\]"):
        DomainIoUMetric(iou_metrics=["mIoU", "mAP"])
    m = metric(mean_over=["nowhere"])
    m.process({}, [sample(PRED, LABEL)])
    with pytest.raises(KeyError, match="nowhere"):
        m.compute_metrics(m.results)
