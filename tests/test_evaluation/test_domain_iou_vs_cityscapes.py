"""DomainIoUMetric against cityscapesscripts' own evaluation (evalPixelLevelSemanticLabeling) on the same data.

Generated Cityscapes-like label maps: ground truth as label ids, drawn from all 34 ids, so that pixels of classes
that Cityscapes ignores in evaluation (unlabeled, ego vehicle, guard rail, ...) occur; predictions as trainIds.
cityscapesscripts reads ``*_gtFine_labelIds.png`` and label-id predictions from files, which are written to a
tmp folder; our metric gets the same maps as trainIds (ignored classes → 255) through data samples, as in a test run.

How the two treat the corner cases, all of which the data contains:

* ignored ground truth: cityscapesscripts counts such pixels in no class (not even as false positives of the
  predicted class); we drop them before counting. A class predicted only there ("train" below) is thus absent
  in both;
* a class absent from the ground truth and never predicted on evaluated pixels ("train"): IoU is NaN in both
  (0/0), and both class averages leave it out (cityscapesscripts' ``getScoreAverage`` skips NaN, we ``nanmean``);
* a class absent from the ground truth but predicted ("bus"): IoU 0 in both, counted in both averages.

So per-class IoUs, NaNs included, and the class average agree on every class (to 1e-4; ours are percentages).
Done per domain (two images each) and for a group pooling both, each against its own cityscapesscripts run.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from mmseg.datasets import CityscapesDataset
from PIL import Image

from soma.evaluation import DomainIoUMetric

CLASSES = CityscapesDataset.METAINFO["classes"]  # trainId order, names as cityscapesscripts spells them
EVALUATED = {label.id: label.trainId for label in CS_LABELS if label.id >= 0 and not label.ignoreInEval}
IGNORED_IDS = [label.id for label in CS_LABELS if label.id >= 0 and label.ignoreInEval]
TRAIN_TO_ID = {train_id: label_id for label_id, train_id in EVALUATED.items()}
ABSENT = CLASSES.index("train")  # in no ground truth; predicted only on ignored pixels
FALSE_ONLY = CLASSES.index("bus")  # in no ground truth; predicted on evaluated pixels
DOMAINS = {"x": ["aachen_000000_000019", "aachen_000001_000019"],
           "y": ["bochum_000000_000313", "bochum_000001_000313"]}
SHAPE = (24, 40)


def id_to_train_id(label_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for label_id, train_id in EVALUATED.items():
        lut[label_id] = train_id
    return lut[label_ids]


def generate(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth (label ids) and a prediction (trainIds): mostly right, wrong often enough for every class."""
    gt_choices = [i for i, t in EVALUATED.items() if t not in (ABSENT, FALSE_ONLY)]
    gt = rng.choice(gt_choices, SHAPE).astype(np.uint8)
    ignored = rng.random(SHAPE) < 0.15
    gt[ignored] = rng.choice(IGNORED_IDS, int(ignored.sum()))
    pred = id_to_train_id(gt)
    wrong = rng.random(SHAPE) < 0.35
    pred[wrong] = rng.choice([t for t in range(19) if t != ABSENT], int(wrong.sum()))
    pred[ignored] = np.where(rng.random(int(ignored.sum())) < 0.5, ABSENT, rng.integers(0, 19, int(ignored.sum())))
    return gt, pred


def cityscapes_evaluation(gt_files: list[Path], pred_dir: Path) -> dict:
    """cityscapesscripts' evaluation of ``gt_files``, each matched to its prediction under ``pred_dir`` by its
    own name rule, with its module-level settings copied, not changed: no instance scores (no instanceIds files),
    no JSON export (it would write next to the installed package), no printing."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    args = copy.copy(cs_eval.args)
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    args.predictionPath = str(pred_dir)
    args.predictionWalk = None
    predictions = [cs_eval.getPrediction(args, str(gt)) for gt in gt_files]
    return cs_eval.evaluateImgLists(predictions, [str(gt) for gt in gt_files], args)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """The files for cityscapesscripts and our metric's results (per-class IoUs from its JSON, unrounded)."""
    root = tmp_path_factory.mktemp("cs_eval")
    rng = np.random.default_rng(0)
    label_id_lut = np.zeros(256, np.uint8)
    for train_id, label_id in TRAIN_TO_ID.items():
        label_id_lut[train_id] = label_id
    metric = DomainIoUMetric(groups=dict(xy=["x", "y"]), output_file=str(root / "ours.json"))
    metric.dataset_meta = dict(classes=CLASSES)
    gt_files: dict[str, list[Path]] = {}
    for domain, names in DOMAINS.items():
        gt_files[domain] = []
        for name in names:
            gt, pred = generate(rng)
            city = name.split("_")[0]
            gt_file = root / "gtFine" / city / f"{name}_gtFine_labelIds.png"
            pred_file = root / "pred" / domain / f"{name}_pred_labelIds.png"
            for path, array in ((gt_file, gt), (pred_file, label_id_lut[pred])):
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
            gt_files[domain].append(gt_file)
            metric.process({}, [dict(pred_sem_seg=dict(data=torch.from_numpy(pred.astype(np.int64))[None]),
                                     gt_sem_seg=dict(data=torch.from_numpy(id_to_train_id(gt).astype(np.int64))[None]),
                                     domain=domain)])
    metrics = metric.compute_metrics(metric.results)
    gt_files["xy"] = gt_files["x"] + gt_files["y"]
    return dict(root=root, gt_files=gt_files, metrics=metrics, ours=json.loads((root / "ours.json").read_text()))


@pytest.mark.parametrize("domain", ["x", "y", "xy"])
def test_per_class_iou_and_class_average_match(data, domain):
    theirs = cityscapes_evaluation(data["gt_files"][domain], data["root"] / "pred")
    ours = data["ours"]["per_class"][domain]["IoU"]
    for name in CLASSES:
        expected, got = theirs["classScores"][name], ours[name]
        if name == "train":
            assert math.isnan(expected) and math.isnan(got), name  # absent from ground truth and prediction
        else:
            assert got / 100 == pytest.approx(expected, abs=1e-4), name
    assert ours["bus"] == 0.0 and theirs["classScores"]["bus"] == 0.0  # predicted, never in the ground truth
    assert 0.0 < theirs["averageScoreClasses"] < 1.0
    class_average = np.nanmean([ours[name] for name in CLASSES]) / 100
    assert class_average == pytest.approx(theirs["averageScoreClasses"], abs=1e-4)
    # The logged number is rounded to 0.01 %, i.e. 5e-5 as a fraction.
    assert data["metrics"][f"{domain}/mIoU"] / 100 == pytest.approx(theirs["averageScoreClasses"], abs=1e-4)
    # The ignore-in-eval classes (unlabeled, guard rail, ...) get no score from cityscapesscripts either.
    assert all(math.isnan(theirs["classScores"][label.name]) for label in CS_LABELS
               if label.id >= 0 and label.ignoreInEval)


def test_the_pooled_group_is_not_the_mean_of_the_domains(data):
    """Guards the comparison above: with per-image class mixes differing, pooled and averaged numbers differ."""
    pooled = data["ours"]["metrics"]["xy/mIoU"]
    assert pooled != pytest.approx((data["ours"]["metrics"]["x/mIoU"] + data["ours"]["metrics"]["y/mIoU"]) / 2,
                                   abs=1e-3)
