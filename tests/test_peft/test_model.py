"""apply_soma on arbitrary modules: selection, freezing, state dicts, summaries."""
import io

import pytest
import torch
import torch.nn as nn

from soma.peft import (
    SoMAConfig,
    SoMALinear,
    apply_soma,
    load_soma_state_dict,
    merge_soma,
    soma_layers,
    soma_state_dict,
    trainable_parameters,
    unload_soma,
    unmerge_soma,
)


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.proj(torch.softmax(q @ k.transpose(-1, -2), -1) @ v)


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm(x))
        return x + self.mlp(x)


class TinyViT(nn.Module):
    def __init__(self, dim=16, depth=4):
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.embed(x))


CONFIG = dict(r=2, target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"), start_block=2)


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyViT()


def test_selection_freezing_and_unchanged_output():
    model = make_model()
    x = torch.randn(2, 5, 8)
    expected = model(x).detach()
    apply_soma(model, CONFIG)
    assert sorted(soma_layers(model)) == [f"blocks.{b}.{m}" for b in (2, 3)
                                          for m in ("attn.proj", "attn.qkv", "mlp.fc1", "mlp.fc2")]
    assert soma_layers(model)["blocks.2.attn.qkv"].splits == 3
    assert torch.allclose(model(x), expected, atol=1e-5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("blocks.2.", "blocks.3.")) for n in trainable)
    assert not any("norm" in n or "base_layer.weight" in n for n in trainable)


def test_summary_counts_match_formula():
    model = apply_soma(make_model(), CONFIG)
    dim, r = 16, 2
    per_block = 3 * r * (dim + dim) + r * (dim + dim) + r * (dim + 2 * dim) + r * (2 * dim + dim)
    summary = trainable_parameters(model)
    assert summary.adapter == 2 * per_block
    assert summary.bias == 2 * (3 * dim + dim + 2 * dim + dim)
    assert summary.other_trainable == 0 and summary.adapted_layers == 2 * (3 + 3)  # q, k, v slices count as matrices
    assert "trainable" in str(summary)


def test_dinov2_large_formula_on_meta_device():
    """DINOv2-L, r=16, blocks 8-23 → 4,718,592 adapter + 147,456 bias parameters."""
    with torch.device("meta"):
        model = TinyViT(dim=1024, depth=24)
        for block in model.blocks:
            block.mlp.fc1, block.mlp.fc2 = nn.Linear(1024, 4096), nn.Linear(4096, 1024)
    apply_soma(model, dict(CONFIG, r=16, start_block=8), initialize=False)
    summary = trainable_parameters(model)
    assert (summary.adapter, summary.bias) == (4_718_592, 147_456)


def test_block_range_rank_pattern_and_rank_zero():
    config = dict(CONFIG, start_block=1, end_block=3, rank_pattern={r"blocks\.2\.mlp": 0, r"attn\.proj": 3})
    layers = soma_layers(apply_soma(make_model(), config))
    assert "blocks.2.mlp.fc1" not in layers and "blocks.1.mlp.fc1" in layers and "blocks.3.attn.qkv" not in layers
    assert layers["blocks.1.attn.proj"].r == 3


def test_merge_unload_and_state_dict_round_trip():
    model = apply_soma(make_model(), CONFIG)
    with torch.no_grad():
        for layer in soma_layers(model).values():
            layer.lora_B.add_(0.05)
            layer.base_layer.bias.add_(0.01)
    x = torch.randn(2, 5, 8)
    trained = model(x).detach()
    state = soma_state_dict(model)
    merge_soma(model)
    merge_soma(model)
    assert torch.allclose(model(x), trained, atol=1e-5)
    unmerge_soma(model)
    assert torch.allclose(model(x), trained, atol=1e-5)

    fresh = apply_soma(make_model(), CONFIG)
    merge_soma(fresh)  # loading into a merged model keeps it merged
    load_soma_state_dict(fresh, state)
    assert torch.allclose(fresh(x), trained, atol=1e-5)

    unload_soma(model)
    assert not soma_layers(model)
    assert torch.allclose(model(x), trained, atol=1e-5)


def test_state_dict_refuses_other_base_and_other_rank():
    state = soma_state_dict(apply_soma(make_model(seed=0), CONFIG))
    with pytest.raises(ValueError, match="different base weights"):
        load_soma_state_dict(apply_soma(make_model(seed=1), CONFIG), state)
    other_rank = apply_soma(make_model(seed=0), dict(CONFIG, r=3))
    with pytest.raises(ValueError, match="the adapter has r=2 but the model has 3"):
        load_soma_state_dict(other_rank, state)
    fewer = apply_soma(make_model(seed=0), dict(CONFIG, start_block=3))
    with pytest.raises(ValueError, match="different SoMA layers"):
        load_soma_state_dict(fewer, state)


def _with_base_weights(change):
    """A fresh adapted model whose frozen base weight of ``blocks.2.mlp.fc1`` is ``change(weight)``."""
    model = apply_soma(make_model(seed=0), CONFIG)
    weight = soma_layers(model)["blocks.2.mlp.fc1"].base_layer.weight
    with torch.no_grad():
        weight.copy_(change(weight.clone()))
    return model


def test_fingerprint_accepts_the_same_weights_and_refuses_flipped_or_fine_tuned_ones():
    """The same base weights pass after a float32 save/load and under rounding changes of one float32 step (what
    another device's SVD or a merge-unmerge round trip can do, ~1e-7 relative); a sign flip (of the whole matrix or
    one row) or a light fine-tuning (1e-3 of the weight's norm) is refused. Statistics of |W| passed all three."""
    state = soma_state_dict(apply_soma(make_model(seed=0), CONFIG))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    load_soma_state_dict(_with_base_weights(lambda w: w), state)
    load_soma_state_dict(_with_base_weights(lambda w: torch.nextafter(w, torch.ones_like(w))), state)
    generator = torch.Generator().manual_seed(1)

    def fine_tuned(weight):
        noise = torch.randn(weight.shape, generator=generator)
        return weight + 1e-3 * weight.norm() * noise / noise.norm()

    def row_flipped(weight):
        weight[3] *= -1
        return weight

    for change in (torch.neg, row_flipped, fine_tuned):
        with pytest.raises(ValueError, match="layer 'blocks.2.mlp.fc1' has a base weight whose fingerprint differs"):
            load_soma_state_dict(_with_base_weights(change), state)


def test_fingerprint_tolerance_follows_the_weight_dtype():
    """A bf16 model merged before loading holds its base weights only to bf16 rounding: still the same weights."""
    model = apply_soma(make_model(seed=0), CONFIG).to(torch.bfloat16)
    state = soma_state_dict(model)
    assert set(state["fingerprint_dtype"].values()) == {"torch.bfloat16"}
    merged = merge_soma(apply_soma(make_model(seed=0), CONFIG).to(torch.bfloat16))
    load_soma_state_dict(merged, state)
    with pytest.raises(ValueError, match="different base weights"):
        load_soma_state_dict(merge_soma(apply_soma(make_model(seed=1), CONFIG).to(torch.bfloat16)), state)


def test_adapter_files_of_the_older_fingerprint_are_refused_with_what_to_do():
    state = dict(soma_state_dict(apply_soma(make_model(seed=0), CONFIG)), format_version=3)
    with pytest.raises(ValueError, match=r"^the adapter state has format_version 3 \(its base-weight fingerprint "
                                         r"cannot tell .*\); .* reads 4: save it again with adapter_state_dict\(\) "
                                         r".*tools/extract_adapter.py"):
        load_soma_state_dict(apply_soma(make_model(seed=0), CONFIG), state)


def test_config_and_injection_errors():
    with pytest.raises(ValueError, match="`r` must be a positive int"):
        SoMAConfig(r=0)
    with pytest.raises(ValueError, match="unknown SoMA option"):
        SoMAConfig.from_dict({"rank": 4})
    with pytest.raises(ValueError, match="no module matches"):
        apply_soma(make_model(), dict(CONFIG, target_modules=("does_not_exist",)))
    with pytest.raises(TypeError, match="nn.Linear only"):
        apply_soma(make_model(), dict(CONFIG, target_modules=("norm",)))
    model = apply_soma(make_model(), CONFIG)
    with pytest.raises(ValueError, match="already applied"):
        apply_soma(model, CONFIG)


def test_plain_sequential():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 6))
    x = torch.randn(3, 8)
    expected = model(x).detach()
    apply_soma(model, dict(r=2, target_modules=("0", "2")))
    assert isinstance(model[0], SoMALinear) and isinstance(model[2], SoMALinear)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_timm_vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=4, num_classes=0).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x).detach()
    apply_soma(model, dict(r=4, target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"), start_block=2))
    assert len(soma_layers(model)) == 8
    assert torch.allclose(model(x), expected, atol=1e-4)


def test_default_targets_work_on_a_plain_timm_vit():
    """The defaults must not match ``patch_embed.proj`` (a Conv2d outside the blocks) of timm's ViT."""
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32,
                            embed_dim=64, depth=3, num_heads=2)
    x = torch.randn(1, 3, 32, 32)
    expected = vit(x).detach()
    apply_soma(vit, SoMAConfig(r=4, start_block=1))
    assert sorted(soma_layers(vit)) == [f"blocks.{b}.{m}" for b in (1, 2)
                                        for m in ("attn.proj", "attn.qkv", "mlp.fc1", "mlp.fc2")]
    assert torch.allclose(vit(x), expected, atol=1e-5)
