"""Every adapter method on the tiny segmentor: 2 training steps, adapter file round trip, merged outputs equal."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

from soma.peft import adapter_layers, adapter_modules, adapter_state_dict, load_adapter_state_dict, merge_adapters

from .test_segmentor import make_batch

HF_LORA = dict(type="HFPeft", config=dict(type="LoraConfig", r=4, lora_alpha=4, bias="lora_only"), start_block=2)
METHODS = {
    "soma": dict(type="SoMA", r=4, start_block=2),
    "pissa": dict(type="SoMA", r=4, start_block=2, init="principal"),
    "lora": dict(type="SoMA", r=4, start_block=2, init="lora"),
    "dora": dict(type="DoRA", r=4, start_block=2),
    "hf-lora": HF_LORA,
    # Rein's query link needs its Mask2Former head (tests/test_models/test_rein.py); here only its tokens.
    "rein": dict(type="Rein", num_tokens=8, token_rank=4, start_block=2, link_queries=False),
}


@pytest.mark.parametrize("peft", METHODS.values(), ids=METHODS.keys())
def test_train_save_load_merge(peft, tiny_segmentor_config):
    if peft["type"] == "HFPeft":
        pytest.importorskip("peft")
    cfg = tiny_segmentor_config(peft=peft)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    vit = model.backbone.vit
    trainable = {n for n, p in vit.named_parameters() if p.requires_grad}
    parts = {**adapter_layers(vit), **adapter_modules(vit)}
    trained = {f"{name}.{key}" for name, part in parts.items() for key in part.trained_tensors()}
    assert trainable == trained
    assert all(n.startswith(("blocks.2.", "blocks.3.")) for n in trainable if n.split(".")[0] == "blocks")
    before = {n: p.detach().clone() for n, p in vit.named_parameters()}
    optim_wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-2)))
    model.train()
    for _ in range(2):
        model.train_step(make_batch(num_images=1), optim_wrapper)
    changed = {n for n, p in vit.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable, changed - trainable

    state = adapter_state_dict(vit)
    torch.manual_seed(0)  # the same (random "pretrained") base weights as the trained model's
    fresh = MODELS.build(cfg.backbone)
    fresh.init_weights()
    load_adapter_state_dict(fresh.vit, state)
    model.eval(), fresh.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.backbone(x)
        merge_adapters(model.backbone)
        merge_adapters(fresh)
        assert all(layer.merged for layer in adapter_layers(fresh).values())
        for ours, theirs, loaded in zip(expected, model.backbone(x), fresh(x)):
            assert torch.allclose(theirs, ours, atol=1e-4) and torch.allclose(loaded, ours, atol=1e-4)
