"""soma.apis.export_peft_adapter / tools/export_peft_adapter.py: a trained SoMA checkpoint as a peft LoRA adapter
that peft loads onto timm's model with the config's base weights."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from ..conftest import REPO

peft = pytest.importorskip("peft")


def stock_timm_model(base_path, timm_call):
    """timm's model built by the `timm.create_model(...)` call the export prints, given the base weights through
    timm's own filter (strictly: the call must build the architecture the weights are of)."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = eval(timm_call, {"timm": timm})  # the printed line, followed as a user would
    model.load_state_dict(checkpoint_filter_fn(torch.load(base_path, weights_only=True), model))
    return model.eval()


def trained_backbone(tiny_run):
    from soma.models import build_model
    from soma.weights import load_checkpoint_checked

    model = build_model(str(tiny_run.config), pretrained=False)
    load_checkpoint_checked(model, tiny_run.trained)
    return model.backbone.eval()


def peft_features(tiny_run, out_dir, x, timm_call):
    model = peft.PeftModel.from_pretrained(stock_timm_model(tiny_run.base, timm_call), str(out_dir)).eval()
    with torch.no_grad():
        return model.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)


def test_exported_adapter_on_the_base_weights_gives_the_trained_features(tiny_run, tmp_path):
    from soma.apis.export import export_peft_adapter

    export = export_peft_adapter(tiny_run.config, tiny_run.trained, tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((tmp_path / "hf" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["bias"] == "none"  # the tiny run trained lora_B only
    # r=4, blocks 2-3 adapted: rank 2r per matrix, q/k/v as one block-diagonal LoRA
    assert export.ranks == {f"blocks.{b}.{m}": (24 if m == "attn.qkv" else 8) for b in (2, 3)
                            for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    # The tiny arch is no released timm model: the call carries its sizes, and a note says so.
    assert "patch_size=16" in export.timm_model and "embed_dim=64, depth=4, num_heads=2" in export.timm_model
    assert len(export.notes) == 1 and export.notes[0].startswith("no released timm model matches arch 'tiny'")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = trained_backbone(tiny_run).forward_intermediates(x)
    for a, b in zip(ours, peft_features(tiny_run, tmp_path / "hf", x, export.timm_model)):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)

    # The adapter file of tools/extract_adapter.py gives the same adapter.
    from safetensors.torch import load_file

    export_peft_adapter(tiny_run.config, tiny_run.root / "adapter.pth", tmp_path / "from_adapter")
    first, second = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("hf", "from_adapter"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_refusals(tiny_run, tmp_path):
    from soma.apis.export import export_peft_adapter
    from soma.utils import ConfigError, OutputExistsError
    from soma.weights import CheckpointMismatchError

    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "adapter_config.json").write_text("{}")  # an earlier export
    with pytest.raises(OutputExistsError, match="--force"):
        export_peft_adapter(tiny_run.config, tiny_run.trained, tmp_path / "hf")
    assert (tmp_path / "hf" / "adapter_config.json").read_text() == "{}"

    frozen = tmp_path / "frozen.py"
    frozen.write_text(f'_base_ = ["{tiny_run.config}"]\nmodel = dict(backbone=dict(peft=None))\n')
    with pytest.raises(ConfigError, match="no LoRA adapter to export"):
        export_peft_adapter(frozen, tiny_run.merged, tmp_path / "never")
    with pytest.raises(CheckpointMismatchError):  # a plain merged backbone is not a SoMA checkpoint
        export_peft_adapter(tiny_run.config, tiny_run.merged, tmp_path / "never")
    checkpoint = torch.load(tiny_run.trained, weights_only=False)
    for key, match in [("backbone.vit.blocks.2.attn.proj.base_layer.weight", "other base weights"),
                       ("backbone.vit.patch_embed.proj.weight", "outside the adapted layers")]:
        state = dict(checkpoint["state_dict"])
        state[key] = state[key] + 0.1
        torch.save(dict(checkpoint, state_dict=state), tmp_path / "other_base.pth")
        with pytest.raises(CheckpointMismatchError, match=match):
            export_peft_adapter(tiny_run.config, tmp_path / "other_base.pth", tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.slow  # a subprocess run of the command line
def test_command_line(tiny_run, tmp_path):
    command = [sys.executable, str(REPO / "tools/export_peft_adapter.py"), str(tiny_run.config),
               str(tiny_run.trained), str(tmp_path / "hf")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "peft.PeftModel.from_pretrained" in result.stdout
    timm_call = re.search(r"^base model: (timm\.create_model\(.*\)) with the weights of ", result.stdout, re.M).group(1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = trained_backbone(tiny_run).forward_intermediates(x)
    torch.testing.assert_close(peft_features(tiny_run, tmp_path / "hf", x, timm_call)[-1], ours[-1], atol=1e-4,
                               rtol=1e-4)
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "--force" in again.stderr
