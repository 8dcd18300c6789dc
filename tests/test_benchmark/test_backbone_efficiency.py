"""Backbone speed/memory paths keep the function: no-grad frozen blocks, checkpointing, SDPA, torch.compile.

All in float32 on a tiny model. Tolerances: the paths run the same operations, so losses and gradients agree
to float32 rounding (atol 1e-6); compiled blocks may fuse operations differently (atol 1e-5).
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from ..test_models.test_segmentor import make_batch

FROZEN_BLOCKS = 2  # the tiny config adapts blocks 2-3 (start_block=2) of 4


def loss_and_grads(model, seed=0):
    """Training loss of one fixed batch and the gradients of the trainable parameters (point sampling seeded)."""
    model.zero_grad(set_to_none=True)
    data = model.data_preprocessor(make_batch(), True)
    torch.manual_seed(seed)
    loss, _ = model.parse_losses(model(**data, mode="loss"))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def build(tiny_segmentor_config, backbone_type="DINOv2", **backbone):
    torch.manual_seed(0)
    cfg = tiny_segmentor_config(backbone_type)
    cfg.backbone.update(backbone)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.train()


def assert_same(a, b, atol):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, atol=atol, rtol=0)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=atol, rtol=1e-5, msg=name)


def test_frozen_blocks_run_without_autograd_and_give_the_same_loss(tiny_segmentor_config):
    model = build(tiny_segmentor_config)
    backbone = model.backbone
    assert backbone._find_first_trained_block() == FROZEN_BLOCKS
    autograd_twin = copy.deepcopy(model)
    # the same weights, every block under autograd
    autograd_twin.backbone._find_first_trained_block = lambda refiners=None: 0

    seen = {}
    for index, block in enumerate(backbone.vit.blocks):
        block.register_forward_hook(lambda m, i, out, index=index: seen.__setitem__(
            index, (torch.is_grad_enabled(), out.requires_grad)))
    result = loss_and_grads(model)
    assert seen == {0: (False, False), 1: (False, False), 2: (True, True), 3: (True, True)}
    for block in backbone.vit.blocks[:FROZEN_BLOCKS]:
        assert all(p.grad is None for p in block.parameters())
    assert all(p.grad is None for n, p in backbone.vit.named_parameters() if not n.startswith("blocks."))
    assert_same(result, loss_and_grads(autograd_twin), atol=1e-6)


def test_unfreezing_after_construction_trains_every_block(tiny_segmentor_config):
    """The no-grad boundary follows the current requires_grad flags, not the ones seen at construction."""
    model = build(tiny_segmentor_config, peft=None, frozen=True)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.backbone.requires_grad_(True)
    model.train()
    loss_and_grads(model)
    missing = [n for n, p in model.backbone.vit.named_parameters() if p.grad is None
               and not n.startswith(("cls_token", "reg_token", "mask_token"))]
    assert not missing, f"parameters without a gradient after unfreezing: {missing[:5]}"


@pytest.mark.parametrize("backbone_type", ["DINOv2", "EVA02"])
def test_gradient_checkpointing_gives_the_same_gradients(backbone_type, tiny_segmentor_config):
    plain = build(tiny_segmentor_config, backbone_type)
    checkpointed = build(tiny_segmentor_config, backbone_type, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    calls = []
    checkpointed.backbone.vit.blocks[-1].register_forward_pre_hook(lambda *args: calls.append(1))
    assert_same(loss_and_grads(checkpointed), loss_and_grads(plain), atol=1e-6)
    assert len(calls) == 2  # the trained block ran again in the backward pass: its activations were not kept


@pytest.mark.parametrize("backbone_type", ["DINOv2", "EVA02", "DINOv3"])
def test_attention_uses_sdpa_even_if_timm_is_told_otherwise(backbone_type, monkeypatch):
    import timm.layers.config as timm_config

    monkeypatch.setattr(timm_config, "_USE_FUSED_ATTN", 0)  # what TIMM_FUSED_ATTN=0 at import does
    backbone = MODELS.build(dict(type=backbone_type, arch="tiny", img_size=64, out_indices=(0, 1, 2, 3),
                                 init_cfg=None))
    assert all(block.attn.fused_attn for block in backbone.vit.blocks)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    with torch.no_grad():
        backbone(torch.randn(1, 3, 64, 64))
    assert len(calls) == len(backbone.vit.blocks)


@pytest.mark.slow  # torch.compile (10 s)
def test_compiled_blocks_match_eager_and_survive_deepcopy(tiny_segmentor_config):
    eager = build(tiny_segmentor_config)
    compiled = build(tiny_segmentor_config, compile_blocks=dict(backend="aot_eager"))
    compiled.load_state_dict(eager.state_dict())
    assert_same(loss_and_grads(compiled), loss_and_grads(eager), atol=1e-5)
    # mmengine's EMA deep-copies the model: the copy must compute with its own weights.
    ema = copy.deepcopy(compiled.backbone).eval()
    eager_copy = copy.deepcopy(eager.backbone).eval()
    with torch.no_grad():
        for p, q in zip(ema.parameters(), eager_copy.parameters()):
            p.mul_(0.5), q.mul_(0.5)
        image = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(ema(image), eager_copy(image), atol=1e-5, rtol=1e-5)


def test_compile_blocks_must_be_a_bool_or_options():
    with pytest.raises(TypeError, match="`compile_blocks` must be a bool or a dict"):
        MODELS.build(dict(type="DINOv2", arch="tiny", img_size=64, init_cfg=None, compile_blocks="max-autotune"))
