"""DINOv2 / EVA02 backbones: pretrained loading before the SVD split, freezing, counts, pyramid."""
import pytest
import timm
import torch

from soma.models import EVA02, DINOv2
from soma.peft import soma_layers, trainable_parameters

TIMM_TINY = {
    DINOv2: ("vit_small_patch14_dinov2", dict(embed_dim=64, depth=4, num_heads=2)),
    EVA02: ("eva02_tiny_patch14_224", dict(embed_dim=64, depth=4, num_heads=2, qkv_fused=False, scale_mlp=True)),
}


@pytest.fixture(params=[DINOv2, EVA02], ids=["DINOv2", "EVA02"])
def pretrained(request, tmp_path):
    """A tiny "pretrained" timm model of the family, saved as a patch-16 timm state dict."""
    name, kwargs = TIMM_TINY[request.param]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=64, patch_size=16, **kwargs)
    with torch.no_grad():  # non-trivial layer scales and biases so that every weight matters
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    path = tmp_path / "pretrained.pth"
    torch.save(model.state_dict(), path)
    return request.param, path


def build(cls, checkpoint, **kwargs):
    kwargs.setdefault("out_scales", None)
    backbone = cls(arch="tiny", img_size=64, patch_size=16, out_indices=(1, 3),
                   init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)), **kwargs)
    backbone.init_weights()
    return backbone


@pytest.mark.parametrize("init", ["minor", "principal", "lora"])
def test_adapted_features_equal_pretrained_features_at_init(pretrained, init):
    cls, checkpoint = pretrained
    frozen = build(cls, checkpoint, frozen=True).eval()
    adapted = build(cls, checkpoint, peft=dict(type="SoMA", r=4, start_block=2, init=init)).eval()
    assert len(soma_layers(adapted.vit)) > 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(adapted.forward_intermediates(x), frozen.forward_intermediates(x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_svd_is_taken_of_the_pretrained_weights(pretrained):
    """The decomposition must see the loaded weights, not the random init (the published code's bug)."""
    cls, checkpoint = pretrained
    adapted = build(cls, checkpoint, peft=dict(type="SoMA", r=4, start_block=2))
    state = torch.load(checkpoint, weights_only=True)
    name, layer = next((n, m) for n, m in soma_layers(adapted.vit).items() if n.endswith("attn.proj"))
    pretrained_weight = state[f"{name}.weight"]
    rebuilt = layer.residual_weight() + layer.delta_weight()
    assert torch.allclose(rebuilt, pretrained_weight, atol=1e-5)
    smallest = torch.linalg.svdvals(pretrained_weight.double())[-4:]
    assert torch.allclose(torch.linalg.svdvals(layer.delta_weight().double())[:4], smallest, atol=1e-5)


def test_frozen_blocks_get_no_gradient_and_every_trainable_parameter_does(pretrained):
    cls, checkpoint = pretrained
    backbone = build(cls, checkpoint, out_scales=(4.0, 0.5), peft=dict(type="SoMA", r=4, start_block=2)).train()
    sum(f.mean() for f in backbone(torch.randn(2, 3, 64, 64))).backward()
    for name, param in backbone.named_parameters():
        in_frozen_part = not name.startswith(("vit.blocks.2.", "vit.blocks.3."))
        if in_frozen_part or not param.requires_grad:
            assert param.grad is None, name
        else:  # DDP without find_unused_parameters needs a gradient for every trainable parameter
            assert param.grad is not None, name
    assert all(not block.training for block in backbone.vit.blocks[:2])
    assert all(block.training for block in backbone.vit.blocks[2:])


def test_full_finetuning_and_frozen_baselines(pretrained):
    cls, checkpoint = pretrained
    full = build(cls, checkpoint, frozen=False)
    assert all(p.requires_grad for p in full.parameters())
    frozen = build(cls, checkpoint, frozen=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match="full fine-tuning"):
        cls(arch="tiny", frozen=False, peft=dict(type="SoMA"))


def test_pyramid_strides():
    backbone = DINOv2(arch="tiny", img_size=64, peft=dict(type="SoMA", r=4, start_block=2))
    backbone.init_weights()
    shapes = [tuple(f.shape) for f in backbone(torch.randn(1, 3, 64, 64))]
    assert shapes == [(1, 64, 16, 16), (1, 64, 8, 8), (1, 64, 4, 4), (1, 64, 2, 2)]  # strides 4, 8, 16, 32


def test_wrong_checkpoint_is_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    backbone = DINOv2(arch="tiny", img_size=64,
                      init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "resnet.pth")))
    with pytest.raises(KeyError, match="lacks .* weights of DINOv2-tiny"):
        backbone.init_weights()
    with pytest.raises(ValueError, match="`arch` must be one of"):
        DINOv2(arch="huge")


@pytest.mark.parametrize("cls, expected", [(DINOv2, (4_718_592, 147_456)), (EVA02, None)])
def test_large_trainable_parameter_count(cls, expected):
    """DINOv2-L, r=16, blocks 8-23 → 4,718,592 adapter + 147,456 bias = 4,866,048."""
    with torch.device("meta"):
        backbone = cls(arch="large", img_size=512, peft=dict(type="SoMA", r=16, start_block=8))
    summary = trainable_parameters(backbone)
    print(f"{cls.__name__}-L SoMA r=16 from block 8: {summary}")
    assert summary.other_trainable == 0
    if expected is not None:
        assert (summary.adapter, summary.bias) == expected
        assert summary.trainable == 4_866_048
    else:  # EVA02-L: q/k/v/proj (1024→1024), SwiGLU fc1_g/fc1_x (1024→2730), fc2 (2730→1024), 16 blocks
        hidden = 2730
        assert summary.adapter == 16 * 16 * (4 * (1024 + 1024) + 3 * (1024 + hidden))


def test_register_token_weights_need_the_matching_backbone(tmp_path):
    """A DINOv2-reg4 file must not load into a backbone without register tokens (never silently drop them)."""
    torch.manual_seed(0)
    reg = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0, img_size=56,
                            **TIMM_TINY[DINOv2][1])
    torch.save(reg.state_dict(), tmp_path / "reg4.pth")
    options = dict(arch="tiny", img_size=56, patch_size=14, out_scales=None, frozen=True,
                   init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "reg4.pth")))
    with pytest.raises((KeyError, ValueError), match="register_tokens"):
        DINOv2(**options).init_weights()
    DINOv2(register_tokens=4, **options).init_weights()


def test_fused_qkv_with_biases_runs_through_the_adapter(tmp_path):
    """EVA-02 tiny/small fuse q/k/v with q/v biases; timm's attention must still call the SoMA layer."""
    torch.manual_seed(0)
    kwargs = dict(embed_dim=64, depth=4, num_heads=2, qkv_fused=True, scale_mlp=True)
    model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=0, img_size=64,
                              patch_size=16, **kwargs)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    torch.save(model.state_dict(), tmp_path / "fused.pth")
    frozen = build(EVA02, tmp_path / "fused.pth", frozen=True, timm_kwargs=dict(qkv_fused=True)).eval()
    adapted = build(EVA02, tmp_path / "fused.pth", timm_kwargs=dict(qkv_fused=True),
                    peft=dict(type="SoMA", r=4, start_block=2)).eval()
    qkv = [layer for name, layer in soma_layers(adapted.vit).items() if name.endswith("attn.qkv")]
    assert len(qkv) == 2 and all(layer.splits == 3 for layer in qkv)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(adapted.forward_intermediates(x)[-1], frozen.forward_intermediates(x)[-1], atol=1e-5)
        for layer in qkv:
            layer.lora_B.add_(0.5)
        assert not torch.allclose(adapted.forward_intermediates(x)[-1], frozen.forward_intermediates(x)[-1],
                                  atol=1e-3)


def test_eva02_final_norm_applies_the_released_final_layernorm(tmp_path):
    """EVA-02 releases hold the final LayerNorm as ``norm`` (timm's filter renames it ``fc_norm``); with
    ``final_norm=True`` it must normalise every output token with those weights, as the EVA-02 code does."""
    name, kwargs = TIMM_TINY[EVA02]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=64, patch_size=16, **kwargs)
    state = model.state_dict()
    weight, bias = 1.0 + torch.randn(64), torch.randn(64)
    # The official MIM layout: `norm.*` plus the `mask_token` that tells timm's filter it is a MIM release.
    state = {k: v for k, v in state.items() if not k.startswith("fc_norm.")}
    state.update({"norm.weight": weight, "norm.bias": bias, "mask_token": torch.zeros(1, 1, 64)})
    torch.save(state, tmp_path / "mim.pth")
    plain = build(EVA02, tmp_path / "mim.pth", frozen=True).eval()
    normed = build(EVA02, tmp_path / "mim.pth", frozen=True, final_norm=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for raw, out in zip(plain(x), normed(x)):
            expected = torch.nn.functional.layer_norm(raw.permute(0, 2, 3, 1), (64,), weight, bias, eps=1e-6)
            torch.testing.assert_close(out, expected.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [DINOv2, EVA02], ids=["DINOv2", "EVA02"])
def test_forward_intermediates_refuses_what_it_cannot_give(cls):
    """Blocks after the last out index and the final norm (with final_norm=False) are pruned: asking for them
    used to return fewer maps, or maps without the norm, without a word."""
    torch.manual_seed(0)
    backbone = cls(arch="tiny", img_size=64, patch_size=16, out_indices=(1, 2), out_scales=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        one, two = backbone.forward_intermediates(x)
        two_again, one_again = backbone.forward_intermediates(x, indices=[2, 1])  # in the order asked
        assert torch.equal(one, one_again) and torch.equal(two, two_again)
        with pytest.raises(ValueError, match=r"`norm=True` needs the final norm, which this backbone pruned"):
            backbone.forward_intermediates(x, norm=True)
        for indices in ([3], [1, -1], [], 2):
            with pytest.raises(ValueError, match=r"block indices in \[0, 2\]"):
                backbone.forward_intermediates(x, indices=indices)
        normed = cls(arch="tiny", img_size=64, patch_size=16, out_indices=(1, 2), out_scales=None,
                     final_norm=True).eval()
        normed.load_state_dict(backbone.state_dict(), strict=False)
        raw, = normed.forward_intermediates(x, indices=[2], norm=False)
        assert torch.equal(raw, two) and not torch.allclose(normed.forward_intermediates(x, indices=[2])[0], raw)


@pytest.mark.parametrize("cls", [DINOv2, EVA02], ids=["DINOv2", "EVA02"])
def test_the_printed_timm_call_rebuilds_the_backbone(cls):
    """tools/export_peft_adapter.py prints a `timm.create_model(...)` line to rebuild the base model: followed as
    printed, it builds every weight of the backbone with its shape, also for archs no released timm model has
    (their sizes are in the call, and a note says so)."""
    from soma.apis.export import timm_model_call

    for arch in ("tiny", "small"):
        backbone = cls(arch=arch, img_size=64, patch_size=16, out_scales=None, final_norm=True)
        call, notes = timm_model_call(backbone)
        rebuilt = eval(call, {"timm": timm}).state_dict()  # as a user would run the printed line
        ours = backbone.vit.state_dict()
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(rebuilt[k].shape) for k in ours}
        if arch == "tiny":
            assert len(notes) == 1 and notes[0].startswith("no released timm model matches arch 'tiny'")
        else:
            assert notes == [] and "embed_dim" not in call
