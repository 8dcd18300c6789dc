"""A tiny Co-DINO + tiny-ViT SoMA detector on generated DWD data: tools/train.py then tools/test.sh, on CPU.

The config is the published Co-DINO one with sizes shrunk (tiny_codino_config.py): the loss must fall, every
auxiliary head and positive query group must appear in the training log, and the test run must end with
per-domain mAP and their mean in metrics.json.
"""
from __future__ import annotations

import pytest

from .conftest import check_domain_metrics, train_then_test
from .tiny_codino_config import TINY_CODINO

LOGGED = ("loss_rpn_cls", "roi.loss_cls", "roi.loss_bbox", "atss.loss_cls", "atss.loss_centerness",
          "pos_roi.loss_cls", "pos_atss.loss_iou", "dn_loss_cls", "enc_loss_cls")


@pytest.mark.slow
def test_train_then_test_sh_reports_per_domain_map(tmp_path):
    run = train_then_test(tmp_path, TINY_CODINO, iters=6)
    losses = [record["loss"] for record in run.records]
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert all(key in record for record in run.records for key in LOGGED)
    assert "daytime_clear/mAP" in run.train_log and "night_rainy/mAP" in run.train_log
    check_domain_metrics(run.metrics)
    assert "mean/mAP" in run.test_stdout and "night_sunny/mAP" in run.test_stdout  # the printed table
    assert run.per_class["test_resolution"] == [[64, 64]] * 5
