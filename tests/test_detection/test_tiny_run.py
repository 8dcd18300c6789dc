"""A tiny DINO + tiny-ViT SoMA detector on generated DWD data: tools/train.py then tools/test.sh, on CPU.

The config is the published one with sizes shrunk (tiny_config.py); the loss must fall over a few iterations and
the test run must end with per-domain mAP in metrics.json.
"""
from __future__ import annotations

import pytest

from soma.datasets import DWD_DOMAINS as DOMAINS

from .conftest import check_domain_metrics, train_then_test
from .tiny_config import TINY_DINO

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier


def test_train_then_test_sh_reports_per_domain_map(tmp_path):
    run = train_then_test(tmp_path, TINY_DINO, iters=6)
    losses = [record["loss"] for record in run.records]
    assert losses[-1] < losses[0] and sum(losses[-2:]) < sum(losses[:2]), losses
    assert "daytime_clear/mAP" in run.train_log  # validation on the source's test list ran
    check_domain_metrics(run.metrics)
    assert "mean/mAP" in run.test_stdout and "metric" in run.test_stdout  # the printed table
    assert run.per_class["images"] == {"daytime_clear": 2, **{d: 6 for d in DOMAINS[1:]}}
    assert run.per_class["tta"] is False and run.per_class["test_resolution"] == [[64, 64]] * 5
    assert set(run.per_class["per_class"]["night_rainy"]["AP"]) == {"bus", "bike", "car", "motor", "person",
                                                                    "rider", "truck"}
