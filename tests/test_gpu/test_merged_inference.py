"""Merged vs unmerged SoMA inference of the tiny segmentor on the device (slide inference, as in testing).

Tolerance (float32): 1e-4 absolute on the logits — merging changes only the rounding of ``W_res + scale·BA``;
GPU kernels round differently from the CPU's, hence looser than the CPU-only 1e-5.
"""
import pytest
import torch
from mmseg.registry import MODELS

from soma.peft import merge_soma, soma_layers, unmerge_soma

from ..test_models.test_segmentor import make_batch
from .conftest import DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_merged_logits_equal_unmerged(device, tiny_segmentor_config):
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_config(num_classes=3)).to(device)
    model.init_weights()
    with torch.no_grad():  # trained-looking adapters, so that merging matters
        for layer in soma_layers(model).values():
            layer.lora_B.add_(0.3 * torch.randn_like(layer.lora_B))
    model.eval()
    batch = make_batch(num_images=1, size=96, test=True)
    with torch.no_grad():
        unmerged = model.test_step(batch)[0].seg_logits.data
        merge_soma(model)
        merged = model.test_step(batch)[0].seg_logits.data
        unmerge_soma(model)
        again = model.test_step(batch)[0].seg_logits.data
    assert merged.device.type == device
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-4)
    torch.testing.assert_close(again, unmerged, rtol=0, atol=1e-4)
