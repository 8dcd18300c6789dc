"""2-process CPU (gloo) training equals 1 process with the same total batch, without find_unused_parameters.

The head is mmseg's FCNHead here (not Mask2Former): Mask2Former samples random points per image, so the two
set-ups would draw different points and the comparison would measure sampling noise, not the distribution.
Tolerance: 1e-5 absolute on every weight after 3 AdamW steps (float sums are reduced in another order).
"""
import os
import subprocess
import sys

import pytest
import torch

from ..conftest import REPO
from ..test_tools.test_train import make_cityscapes_like

pytestmark = pytest.mark.slow  # end-to-end runs of the tools: the slow tier

TOLERANCE = 1e-5
CONFIG = """
_base_ = ["{repo}/configs/_base_/default_runtime.py", "{repo}/configs/_base_/schedules/soma_40k.py"]
custom_imports = dict(imports=["soma.models", "soma.datasets", "soma.evaluation", "soma.engine"],
                      allow_failed_imports=False)
model = dict(
    type="SoMAEncoderDecoder",
    data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, size=(64, 64), pad_val=0, seg_pad_val=255),
    backbone=dict(type="DINOv2", arch="tiny", img_size=64, out_indices=(3,), out_scales=None,
                  peft=dict(type="SoMA", r=4, start_block=2), init_cfg=None),
    decode_head=dict(type="FCNHead", in_channels=64, channels=32, num_convs=1, concat_input=False, num_classes=19,
                     dropout_ratio=0.0, norm_cfg=None, align_corners=False,
                     loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0)),
    test_cfg=dict(mode="whole"))
dataset = dict(type="CityscapesDataset", data_root="{data}", data_prefix=dict(img_path="leftImg8bit/train",
               seg_map_path="gtFine/train"), pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
               dict(type="PackSegInputs")])
# No shuffling: with 2 processes rank r reads images r, r+2, ..., so each step sees the same 2 images as 1 process.
train_dataloader = dict(batch_size={batch}, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=False),
                        dataset=dataset)
train_cfg = dict(max_iters=3, val_interval=100)
val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=3), visualization=dict(draw=False))
randomness = dict(seed=0)
optim_wrapper = dict(optimizer=dict(lr=1e-3))  # steps large enough that an unsynchronised rank would show
"""


def test_two_processes_match_one_with_the_same_total_batch(tmp_path):
    make_cityscapes_like(tmp_path / "data", num_images=4)
    for name, batch in (("one", 2), ("two", 1)):
        (tmp_path / f"{name}.py").write_text(CONFIG.format(repo=REPO, data=tmp_path / "data", batch=batch))
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "tools/train.py", str(tmp_path / "one.py"), "--work-dir",
                          str(tmp_path / "a")],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    env["PORT"] = str(31500 + os.getpid() % 1000)
    two = subprocess.run(["bash", "tools/dist_train.sh", str(tmp_path / "two.py"), "2", "--work-dir",
                          str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    log = two.stdout + two.stderr
    assert "Distributed training: True" in log and "find_unused_parameters" not in log.replace(
        "'find_unused_parameters': False", "")
    one_run = torch.load(tmp_path / "a/iter_3.pth", map_location="cpu", weights_only=False)
    a = one_run["state_dict"]
    b = torch.load(tmp_path / "b/iter_3.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and any(k.endswith("lora_B") for k in a)  # the adapters are compared too
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst <= TOLERANCE, worst
    assert one_run["meta"]["iter"] == 3


def test_a_user_error_in_the_workers_ends_in_one_line_without_torchruns_traceback(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PORT=str(32500 + os.getpid() % 1000))
    failed = subprocess.run(["bash", "tools/dist_train.sh", "configs/demo/mask2former_dinov2-tiny_soma.py", "2",
                             "--work-dir", str(tmp_path), "--cfg-options", "model.backbone.peft.r=-3"],
                            cwd=REPO, capture_output=True, text=True, env=env)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and "ChildFailedError" not in failed.stderr, failed.stderr[-3000:]
    assert "`r` must be a positive int, got -3" in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: tools/train.py failed in 2 processes (first: rank "), last
