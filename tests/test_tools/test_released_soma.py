"""Reproducing the official SoMA release: its checkpoints (importer), its initialisation, its patch kernel.

Everything is checked against references written here from the official code's semantics, in plain torch:
a DINOv2 with separate q/k/v layers computing ``W_pre x + b + s·B A x`` (s = 1), a 14→16 kernel interpolated
bicubically and a position embedding resized bicubically without antialiasing.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from soma.models import build_model
from soma.convert.models import released_soma
from soma.models import DINOv2
from soma.peft import soma_layers

from ..conftest import REPO, TINY_MODEL
from .test_train import CONFIG, make_cityscapes_like
from .weight_layouts import random_timm_model

DIM, DEPTH, HEADS, RANK, START, PATCH, CROP = 64, 4, 2, 4, 2, 16, 64  # the demo config's tiny model
TARGETS = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")
SHAPES = {"attn.q": (DIM, DIM), "attn.k": (DIM, DIM), "attn.v": (DIM, DIM), "attn.proj": (DIM, DIM),
          "mlp.fc1": (4 * DIM, DIM), "mlp.fc2": (DIM, 4 * DIM)}  # (out, in)


# ---------------------------------------------------------------------------------------------------- files
def official_dinov2() -> dict[str, torch.Tensor]:
    """A tiny DINOv2 in the facebookresearch release layout: fused qkv, 14×14 kernel, 37×37 grid, mask token."""
    state = {k: v.clone() for k, v in random_timm_model("vit_small_patch14_dinov2", 518, embed_dim=DIM,
                                                         depth=DEPTH, num_heads=HEADS).state_dict().items()}
    state["mask_token"] = torch.randn(1, DIM)
    return state


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if ".attn.qkv." in key:
            for name, part in zip("qkv", value.chunk(3)):
                out[key.replace(".qkv.", f".{name}.")] = part
        else:
            out[key] = value
    return out


def official_release_backbone(dinov2: dict[str, torch.Tensor], grid: int) -> dict[str, torch.Tensor]:
    """What the official convert_dinov2_sora.py writes: bicubic 16×16 kernel, pos grid resized, q/k/v split."""
    state = split_qkv(dinov2)
    state["patch_embed.proj.weight"] = F.interpolate(state["patch_embed.proj.weight"].float(), size=(PATCH, PATCH),
                                                     mode="bicubic", align_corners=False)
    pos = state["pos_embed"]
    side = math.isqrt(pos.shape[1] - 1)
    patches = F.interpolate(pos[:, 1:].reshape(1, side, side, DIM).permute(0, 3, 1, 2), size=(grid, grid),
                            mode="bicubic", align_corners=False)
    state["pos_embed"] = torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, DIM)], 1)
    return state


def head_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    model = build_model(str(TINY_MODEL), pretrained=False)
    return {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items() if k.startswith("decode_head.")}


def released_file(dinov2: dict[str, torch.Tensor], layout: str = "extracted") -> dict:
    """A SoMA release checkpoint of the tiny model: what the official extract_soma_weights.py keeps, or everything."""
    torch.manual_seed(2)
    base = split_qkv(dinov2)
    state = {"backbone.model.mask_token": torch.randn(1, DIM)}
    for key, value in base.items():  # the official extract keeps every key ending in "bias"
        if key.endswith("bias"):
            trained = any(key == f"blocks.{i}.{t}.bias" for i in range(START, DEPTH) for t in TARGETS)
            state[f"backbone.model.{key}"] = value + 0.05 * torch.randn_like(value) if trained else value
    for index in range(START, DEPTH):
        for target in TARGETS:
            out_features, in_features = SHAPES[target]
            state[f"backbone.model.blocks.{index}.{target}.lora_A.weight"] = 0.2 * torch.randn(RANK, in_features)
            state[f"backbone.model.blocks.{index}.{target}.lora_B.weight"] = 0.2 * torch.randn(out_features, RANK)
    state.update(head_state())
    if layout == "full":  # an official training checkpoint: every backbone weight, residual slots = W_pre
        for key, value in official_release_backbone(dinov2, CROP // PATCH).items():
            state.setdefault(f"backbone.model.{key}", value)
    # mmengine's EMAHook saves the raw weights under ema_state_dict; the evaluated ones are state_dict.
    return {"state_dict": state, "ema_state_dict": {f"module.{k}": torch.zeros_like(v) for k, v in state.items()}}


# ---------------------------------------------------------------------------------------------------- reference
def reference_features(dinov2: dict[str, torch.Tensor], released: dict[str, torch.Tensor],
                       x: torch.Tensor) -> list[torch.Tensor]:
    """The official model's block outputs, written from its semantics (separate q/k/v, W_pre + s·B A, s = 1)."""
    base = official_release_backbone(dinov2, x.shape[-1] // PATCH)
    weights = {k: released.get(f"backbone.model.{k}", v) for k, v in base.items()}

    def linear(h: torch.Tensor, name: str) -> torch.Tensor:
        out = F.linear(h, weights[f"{name}.weight"], weights[f"{name}.bias"])
        a = released.get(f"backbone.model.{name}.lora_A.weight")
        b = released.get(f"backbone.model.{name}.lora_B.weight")
        return out if a is None else out + (h @ a.T) @ b.T * 1.0

    def norm(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(h, (DIM,), weights[f"{name}.weight"], weights[f"{name}.bias"], eps=1e-6)

    batch, grid = x.shape[0], x.shape[-1] // PATCH
    tokens = F.conv2d(x, weights["patch_embed.proj.weight"], weights["patch_embed.proj.bias"], stride=PATCH)
    tokens = torch.cat([weights["cls_token"].expand(batch, -1, -1), tokens.flatten(2).transpose(1, 2)], 1)
    tokens = tokens + weights["pos_embed"]
    outputs = []
    for index in range(DEPTH):
        block = f"blocks.{index}"
        h = norm(tokens, f"{block}.norm1")
        q, k, v = (linear(h, f"{block}.attn.{n}").reshape(batch, -1, HEADS, DIM // HEADS).transpose(1, 2)
                   for n in "qkv")
        attention = ((q * (DIM // HEADS) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        h = linear((attention @ v).transpose(1, 2).reshape(batch, -1, DIM), f"{block}.attn.proj")
        tokens = tokens + weights[f"{block}.ls1.gamma"] * h
        h = linear(F.gelu(linear(norm(tokens, f"{block}.norm2"), f"{block}.mlp.fc1")), f"{block}.mlp.fc2")
        tokens = tokens + weights[f"{block}.ls2.gamma"] * h
        outputs.append(tokens[:, 1:].transpose(1, 2).reshape(batch, DIM, grid, grid))
    return outputs


# ---------------------------------------------------------------------------------------------------- importer
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    dinov2 = official_dinov2()
    torch.save(dinov2, root / "dinov2_vitt14_pretrain.pth")
    return root, dinov2


def import_file(root, released: dict, name: str = "best.pth") -> tuple[int, object]:
    torch.save(released, root / name)
    out = root / f"imported_{name}"
    code = released_soma.main([str(root / name), str(root / "dinov2_vitt14_pretrain.pth"), str(out),
                               "--config", str(TINY_MODEL)])
    return code, out


@pytest.mark.parametrize("layout", ["extracted", "full"])
def test_imported_model_computes_the_released_function(files, layout):
    root, dinov2 = files
    released = released_file(dinov2, layout)
    code, out = import_file(root, released, f"{layout}.pth")
    assert code == 0
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["adapted_layers"] == 2 * 4  # blocks 2-3: qkv, proj, fc1, fc2

    model = build_model(str(TINY_MODEL), pretrained=False)
    model.load_state_dict(saved["state_dict"], strict=True)
    model.eval()
    for key, value in released["state_dict"].items():
        if key.startswith("decode_head."):
            assert torch.equal(model.state_dict()[key], value), key
    for name, layer in soma_layers(model.backbone.vit).items():  # residual slot = the pretrained weight
        assert torch.equal(layer.base_layer.weight, dinov2[f"{name}.weight"]), name

    x = torch.randn(2, 3, CROP, CROP)
    with torch.no_grad():
        ours = model.backbone.forward_intermediates(x)
        theirs = reference_features(dinov2, released["state_dict"], x)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # Mask2Former logits of the whole segmentor, against the same head on the reference features.
        metas = [dict(img_shape=(CROP, CROP))] * 2
        logits = model.decode_head.predict(model.extract_feat(x), metas, model.test_cfg)
        pyramid = [F.interpolate(f, scale_factor=s, mode="bilinear", align_corners=False) if s != 1 else f
                   for f, s in zip(theirs, (4.0, 2.0, 1.0, 0.5))]
        expected = model.decode_head.predict(pyramid, metas, model.test_cfg)
        assert logits.shape == (2, 19, CROP, CROP)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_test_sh_evaluates_an_imported_checkpoint(files, tmp_path):
    root, dinov2 = files
    make_cityscapes_like(tmp_path / "data")
    config = tmp_path / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=tmp_path / "data"))
    torch.save(released_file(dinov2), tmp_path / "best.pth")
    out = tmp_path / "imported.pth"
    assert released_soma.main([str(tmp_path / "best.pth"), str(root / "dinov2_vitt14_pretrain.pth"), str(out),
                               "--config", str(config)]) == 0
    result = subprocess.run(["bash", str(REPO / "tools/test.sh"), str(config), str(out), "1", "--work-dir",
                             str(tmp_path / "test")], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHON=sys.executable))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert math.isfinite(metrics["mIoU"]) and metrics["checkpoint"] == str(out)


def broken(dinov2, change) -> dict:
    released = released_file(dinov2)
    change(released["state_dict"])
    return released


@pytest.mark.parametrize("change, phrases", [
    (lambda s: s.pop("backbone.model.blocks.3.mlp.fc2.lora_B.weight"),
     ["in neither file", "backbone.model.blocks.3.mlp.fc2.lora_B.weight"]),
    (lambda s: s.pop("decode_head.cls_embed.weight"), ["in neither file", "decode_head.cls_embed.weight"]),
    (lambda s: s.pop("backbone.model.blocks.2.attn.k.lora_B.weight"),
     ["in neither file", "backbone.model.blocks.2.attn.k.lora_B.weight"]),
    (lambda s: s.update({"backbone.model.blocks.1.mlp.fc1.lora_A.weight": torch.zeros(RANK, DIM)}),
     ["no place", "backbone.model.blocks.1.mlp.fc1.lora_A.weight"]),
    (lambda s: s.update({"backbone.model.blocks.2.attn.q.lora_C.weight": torch.zeros(RANK, DIM),
                         "query_head.fc.weight": torch.zeros(2, 2)}),
     ["no place", "backbone.model.blocks.2.attn.q.lora_C.weight", "query_head.fc.weight"]),
    (lambda s: s.update({"backbone.model.blocks.2.mlp.fc1.lora_A.weight": torch.zeros(RANK + 1, DIM)}),
     ["another shape", "blocks.2.mlp.fc1.lora_A"]),
], ids=["missing-adapter", "missing-head", "missing-k-slice", "adapter-on-a-frozen-block", "unknown-keys",
        "other-rank"])
def test_importer_refuses_with_the_key_names(files, change, phrases, capsys):
    root, dinov2 = files
    code, out = import_file(root, broken(dinov2, change), "broken.pth")
    assert code == 1 and not out.exists()
    error = capsys.readouterr().err
    for phrase in phrases:
        assert phrase in error


def test_importer_refuses_a_pinv_kernel(files, tmp_path, capsys):
    root, dinov2 = files
    torch.save(dict(state_dict=dinov2, meta=dict(patch_resample="pinv", patch_size=16)), tmp_path / "pinv.pth")
    torch.save(released_file(dinov2), tmp_path / "best.pth")
    code = released_soma.main([str(tmp_path / "best.pth"), str(tmp_path / "pinv.pth"), str(tmp_path / "out.pth"),
                               "--config", str(TINY_MODEL)])
    assert code == 1 and "'pinv'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- init
def test_backbone_released_init_replays_the_official_construction(files):
    """init_weights() with init="released": W as loaded; s·B A = minor part of the official model's random init."""
    root, dinov2 = files
    backbone = DINOv2(arch="tiny", img_size=CROP, patch_size=PATCH, out_indices=(0, 1, 2, 3),
                      peft=dict(type="SoMA", r=RANK, start_block=START, init="released", init_seed=42),
                      init_cfg=dict(type="Pretrained", checkpoint=str(root / "dinov2_vitt14_pretrain.pth")))
    backbone.init_weights()

    # The official DinoVisionTransformer under torch.manual_seed(42): patch conv, then q, k, v, proj, fc1, fc2.
    torch.manual_seed(42)
    nn.Conv2d(3, DIM, PATCH, PATCH)
    random_init = {f"blocks.{i}.{t}": nn.Linear(SHAPES[t][1], SHAPES[t][0]).weight.detach()
                   for i in range(DEPTH) for t in TARGETS}
    for name, layer in soma_layers(backbone.vit).items():
        assert torch.equal(layer.base_layer.weight, dinov2[f"{name}.weight"]), name
        parts = [name.replace("qkv", n) for n in "qkv"] if name.endswith("qkv") else [name]
        rows = layer.out_features // len(parts)
        for index, part in enumerate(parts):
            u, s, vh = torch.linalg.svd(random_init[part].double(), full_matrices=False)
            minor = u[:, -RANK:] @ torch.diag(s[-RANK:]) @ vh[-RANK:]
            torch.testing.assert_close(layer.delta_weight()[index * rows:(index + 1) * rows].double(), minor,
                                       atol=1e-6, rtol=0)
