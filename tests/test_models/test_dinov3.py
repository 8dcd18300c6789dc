"""DINOv3 backbone: timm's features after loading, SoMA at init, trainable count, Mask2Former steps, config."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from soma.models.backbones import DINOv3
from soma.peft import soma_layers, trainable_parameters

from ..conftest import MODEL_BASE, REPO
from .test_segmentor import make_batch

TINY = dict(embed_dim=64, depth=4, num_heads=2)  # DINOv3's "tiny" arch
TIMM_NAMES = {False: "vit_small_patch16_dinov3", True: "vit_small_patch16_dinov3_qkvb"}
DINOV3_CONFIG = REPO / "configs/_base_/models/mask2former_dinov3-l_soma.py"


def make_pretrained(path: Path, qkv_bias: bool = False) -> torch.nn.Module:
    """A tiny timm DINOv3 with random weights everywhere (layer scales, q/v biases), saved at ``path``."""
    torch.manual_seed(0)
    model = timm.create_model(TIMM_NAMES[qkv_bias], pretrained=False, num_classes=0, img_size=64,
                              dynamic_img_size=True, **TINY)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    torch.save(model.state_dict(), path)
    return model.eval()


@pytest.fixture(params=[False, True], ids=["no-qkv-bias", "qkv-bias"])
def pretrained(request, tmp_path) -> tuple[bool, Path, torch.nn.Module]:
    path = tmp_path / "dinov3_tiny.pth"
    return request.param, path, make_pretrained(path, request.param)


def build(checkpoint: Path, qkv_bias: bool = False, **kwargs) -> DINOv3:
    kwargs.setdefault("out_scales", None)
    backbone = DINOv3(arch="tiny", img_size=64, qkv_bias=qkv_bias,
                      init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)), **kwargs)
    backbone.init_weights()
    return backbone.eval()


def test_loaded_backbone_gives_timm_features(pretrained):
    qkv_bias, path, reference = pretrained
    backbone = build(path, qkv_bias, frozen=True)
    assert backbone.vit.num_prefix_tokens == 5  # class + 4 storage tokens, cut off the maps
    x = torch.randn(2, 3, 80, 64)  # not square: RoPE follows the grid
    with torch.no_grad():
        ours = backbone.forward_intermediates(x)
        theirs = reference.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
    assert [tuple(f.shape) for f in ours] == [(2, 64, 5, 4)] * 4
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_soma_output_equals_frozen_output_at_init(pretrained):
    qkv_bias, path, _ = pretrained
    frozen = build(path, qkv_bias, frozen=True)
    adapted = build(path, qkv_bias, peft=dict(type="SoMA", r=4, start_block=2))
    layers = soma_layers(adapted.vit)
    # Blocks 2 and 3: the fused qkv (decomposed as q, k, v), proj, fc1, fc2.
    targets = ("attn.proj", "attn.qkv", "mlp.fc1", "mlp.fc2")
    assert sorted(layers) == [f"blocks.{b}.{m}" for b in (2, 3) for m in targets]
    assert all(layers[f"blocks.{b}.attn.qkv"].splits == 3 for b in (2, 3))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(adapted.forward_intermediates(x), frozen.forward_intermediates(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # The adapters are in the forward path (with q/v biases too): moving B changes the output.
        for layer in layers.values():
            layer.lora_B.add_(0.1)
        assert not torch.allclose(adapted.forward_intermediates(x)[-1], frozen.forward_intermediates(x)[-1])


def test_pyramid_strides_and_gradients(tmp_path):
    make_pretrained(tmp_path / "dinov3_tiny.pth")
    backbone = build(tmp_path / "dinov3_tiny.pth", out_scales=(4.0, 2.0, 1.0, 0.5),
                     peft=dict(type="SoMA", r=4, start_block=2)).train()
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 64, 16, 16), (1, 64, 8, 8), (1, 64, 4, 4), (1, 64, 2, 2)]
    sum(f.mean() for f in features).backward()
    for name, param in backbone.named_parameters():
        if param.requires_grad:
            assert name.startswith(("vit.blocks.2.", "vit.blocks.3.")) and param.grad is not None, name
        else:
            assert param.grad is None, name


def test_large_trainable_parameter_count():
    """DINOv3-L, r=16, blocks 8-23; unlike DINOv2-L its qkv has no bias."""
    with torch.device("meta"):
        backbone = DINOv3(arch="large", img_size=512, peft=dict(type="SoMA", r=16, start_block=8))
    summary = trainable_parameters(backbone)
    dim, hidden, r, blocks = 1024, 4096, 16, 16
    # q, k, v slices and proj: r * (in + out) each; fc1 and fc2: r * (dim + hidden).
    adapter = blocks * r * (4 * (dim + dim) + 2 * (dim + hidden))
    bias = blocks * (dim + hidden + dim)  # proj, fc1, fc2
    print(f"DINOv3-L SoMA r=16 from block 8: {summary}; formula: adapters 16*16*(4*2048 + 2*5120) = {adapter:,}, "
          f"biases 16*(1024 + 4096 + 1024) = {bias:,}, total {adapter + bias:,}")
    assert (summary.adapter, summary.bias, summary.other_trainable) == (adapter, bias, 0)
    assert summary.trainable == 4_816_896 and summary.adapted_layers == 16 * 6


def test_mask2former_train_and_test_step(tiny_segmentor_config):
    from mmengine.optim import build_optim_wrapper

    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_config("DINOv3"))
    model.init_weights()
    assert isinstance(model.backbone, DINOv3) and soma_layers(model.backbone.vit)
    optim_wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)))
    model.train()
    data = model.data_preprocessor(make_batch(), True)
    loss, _ = model.parse_losses(model(**data, mode="loss"))
    assert torch.isfinite(loss)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused  # DDP without find_unused_parameters
    adapter = model.backbone.vit.blocks[2].attn.qkv.lora_A
    before = adapter.detach().clone()
    optim_wrapper.step()
    assert not torch.equal(adapter, before)

    model.eval()
    with torch.no_grad():
        results = model.test_step(make_batch(num_images=1, test=True))
    assert results[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_config_is_the_dinov2_config_with_the_backbone_swapped():
    dinov2, dinov3 = Config.fromfile(str(MODEL_BASE)).model, Config.fromfile(str(DINOV3_CONFIG)).model
    assert dinov3.backbone.pop("type") == "DINOv3" and dinov2.backbone.pop("type") == "DINOv2"
    assert dinov3.backbone.init_cfg.pop("checkpoint").endswith("dinov3_vitl16_converted.pth")
    dinov2.backbone.init_cfg.pop("checkpoint")
    assert dinov3.to_dict() == dinov2.to_dict()


def test_registered_in_mmseg_and_mmdet():
    from mmdet.registry import MODELS as DET_MODELS

    assert MODELS.get("DINOv3") is DINOv3 and DET_MODELS.get("DINOv3") is DINOv3


def test_wrong_weights_and_options_are_refused(tmp_path):
    make_pretrained(tmp_path / "qkvb.pth", qkv_bias=True)
    with pytest.raises(ValueError, match="non-zero q/v biases .* `qkv_bias=True`"):
        build(tmp_path / "qkvb.pth", qkv_bias=False, frozen=True)
    make_pretrained(tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="weights have none; .* `qkv_bias=False`"):
        build(tmp_path / "plain.pth", qkv_bias=True, frozen=True)
    state = torch.load(tmp_path / "plain.pth", weights_only=True)
    torch.save(dict(state, pos_embed=torch.zeros(1, 17, 64)), tmp_path / "abs_pos.pth")
    with pytest.raises(ValueError, match="absolute position embedding"):
        build(tmp_path / "abs_pos.pth", frozen=True)
    with pytest.raises(ValueError, match="`register_tokens` must be 4"):
        DINOv3(arch="tiny", register_tokens=0)
    with pytest.raises(ValueError, match="`arch` must be one of"):
        DINOv3(arch="giant")


def test_zero_biases_load_into_the_bias_free_model(tmp_path):
    """The distilled releases' q/v biases are zero: the bias-free model (default) loads them exactly."""
    reference = make_pretrained(tmp_path / "qkvb.pth", qkv_bias=True)
    state = torch.load(tmp_path / "qkvb.pth", weights_only=True)
    for key in [k for k in state if k.endswith(("q_bias", "v_bias"))]:
        state[key] = torch.zeros_like(state[key])
    reference.load_state_dict(state)
    torch.save(state, tmp_path / "zero_bias.pth")
    backbone = build(tmp_path / "zero_bias.pth", frozen=True)
    assert getattr(backbone.vit.blocks[0].attn, "q_bias", None) is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone.forward_intermediates(x)[-1],
                                   reference.forward_intermediates(x, indices=[3], intermediates_only=True)[0],
                                   atol=1e-5, rtol=1e-5)
