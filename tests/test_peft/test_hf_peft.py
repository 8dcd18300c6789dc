"""HF peft tuners as an adapter method: injection by config name, freezing, merging, state dicts, re-initialising."""
import pytest
import torch

from soma.peft import (HFPeftConfig, adapter_layers, adapter_state_dict, apply_hf_peft, initialize_hf_peft,
                       is_adapter_key, load_adapter_state_dict, mark_only_adapters_trainable, merge_adapters,
                       trainable_parameters, unload_adapters, unmerge_adapters)

from .test_model import TinyViT

peft = pytest.importorskip("peft")
TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyViT()


def lora(**options):
    return HFPeftConfig(config=dict(type="LoraConfig", r=2, lora_alpha=4, **options), target_modules=TARGETS,
                        start_block=2)


def train_like(model):
    """Move every trained tensor away from its initial value (LoRA's B starts at zero)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            for tensor in layer.trained_tensors().values():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))


def test_lora_by_name_blocks_and_freezing():
    model = make_model()
    x = torch.randn(2, 5, 8)
    expected = model(x).detach()
    apply_hf_peft(model, lora())
    layers = adapter_layers(model)
    assert sorted(layers) == [f"blocks.{b}.{m}" for b in (2, 3) for m in sorted(TARGETS)]
    assert torch.allclose(model(x), expected, atol=1e-6)  # B = 0 at init
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n and n.startswith(("blocks.2.", "blocks.3.")) for n in trainable)
    summary = trainable_parameters(model)
    assert summary.adapter == sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    assert summary.adapted_layers == 8
    assert is_adapter_key("backbone.vit.blocks.2.attn.qkv.lora_A.default.weight")
    assert not is_adapter_key("backbone.vit.blocks.2.attn.qkv.base_layer.weight")


@pytest.mark.parametrize("config", [dict(type="LoraConfig", r=2, lora_alpha=4), dict(type="LoHaConfig", r=2, alpha=4)])
def test_merge_state_dict_round_trip_and_unload(config):
    model = make_model()
    apply_hf_peft(model, HFPeftConfig(config=config, target_modules=TARGETS, start_block=2))
    train_like(model)
    x = torch.randn(2, 5, 8)
    trained = model(x).detach()
    layer = adapter_layers(model)["blocks.2.mlp.fc1"]
    frozen = layer.frozen_weight().clone()
    merge_adapters(model)
    assert all(layer.merged for layer in adapter_layers(model).values())
    assert torch.allclose(model(x), trained, atol=1e-5)
    assert torch.allclose(layer.base_layer.weight, frozen + layer.delta_weight(), atol=1e-5)
    assert torch.allclose(layer.frozen_weight(), frozen, atol=1e-6)
    unmerge_adapters(model)
    state = adapter_state_dict(model)
    assert state["method"] == "HFPeft" and state["config"]["config"]["type"] == config["type"]

    fresh = make_model()
    apply_hf_peft(fresh, HFPeftConfig(config=config, target_modules=TARGETS, start_block=2))
    load_adapter_state_dict(fresh, state)
    assert torch.allclose(fresh(x), trained, atol=1e-5)
    with pytest.raises(ValueError, match="different base weights"):
        load_adapter_state_dict(apply_hf_peft(make_model(seed=1), HFPeftConfig(
            config=config, target_modules=TARGETS, start_block=2)), state)

    unload_adapters(fresh)
    assert not adapter_layers(fresh) and isinstance(fresh.blocks[2].attn.qkv, torch.nn.Linear)
    assert torch.allclose(fresh(x), trained, atol=1e-5)


def test_initialize_takes_dora_magnitude_from_the_loaded_weights():
    model = make_model(seed=1)  # "random" weights at construction
    apply_hf_peft(model, lora(use_dora=True))
    parameter = model.blocks[2].mlp.fc1.lora_magnitude_vector["default"].weight
    pretrained = make_model(seed=0)
    with torch.no_grad():  # the pretrained weights load into the base layers
        for name, param in pretrained.named_parameters():
            module, _, leaf = name.rpartition(".")
            target = f"{module}.base_layer.{leaf}" if module in adapter_layers(model) else name
            model.get_parameter(target).copy_(param)
    initialize_hf_peft(model)
    assert model.blocks[2].mlp.fc1.lora_magnitude_vector["default"].weight is parameter  # in place
    assert torch.allclose(parameter, pretrained.blocks[2].mlp.fc1.weight.norm(dim=1), atol=1e-6)
    x = torch.randn(2, 5, 8)
    assert torch.allclose(model(x), pretrained(x), atol=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="peft has no tuner config class 'NoSuchConfig'"):
        apply_hf_peft(make_model(), HFPeftConfig(config=dict(type="NoSuchConfig"), target_modules=TARGETS))
    with pytest.raises(ValueError, match="either `start_block`"):
        HFPeftConfig(config=dict(type="LoraConfig", layers_to_transform=[1]), start_block=1)
    with pytest.raises(ValueError, match="unknown HFPeft option"):
        HFPeftConfig.from_dict(dict(config=dict(type="LoraConfig"), r=4))
    model = apply_hf_peft(make_model(), lora())
    with pytest.raises(ValueError, match="already applied"):
        apply_hf_peft(model, lora())



def test_lora_only_biases_are_trained_and_saved_as_the_config_says():
    """peft's bias="lora_only" trains the adapted layers' biases: re-freezing (mark_only_adapters_trainable, as the
    backbone's tools do) keeps them trained, and the adapter file holds them even when every flag is off."""
    model = apply_hf_peft(make_model(), lora(bias="lora_only"))
    mark_only_adapters_trainable(model)
    bias = model.blocks[2].mlp.fc1.base_layer.bias
    assert bias.requires_grad and not model.blocks[1].mlp.fc1.bias.requires_grad
    train_like(model)
    x = torch.randn(2, 5, 8)
    trained = model(x).detach()
    model.requires_grad_(False)
    state = adapter_state_dict(model)
    assert "blocks.2.mlp.fc1.base_layer.bias" in state["adapters"]

    fresh = apply_hf_peft(make_model(), lora(bias="lora_only"))
    load_adapter_state_dict(fresh, state)
    assert torch.allclose(fresh(x), trained, atol=1e-5)


def test_bias_all_saves_every_trained_bias():
    """peft's bias="all" trains every bias of the model, also of layers without an adapter: they are counted,
    stay trained, go into the adapter file and load back; a model without them refuses that file."""
    model = apply_hf_peft(make_model(), lora(bias="all"))
    mark_only_adapters_trainable(model)
    biases = {name: p for name, p in model.named_parameters() if name.endswith(".bias")}
    assert all(p.requires_grad for p in biases.values()) and "blocks.0.norm.bias" in biases
    assert trainable_parameters(model).bias == sum(p.numel() for p in biases.values())
    train_like(model)
    with torch.no_grad():
        for param in biases.values():
            param.add_(0.1)
    x = torch.randn(2, 5, 8)
    trained = model(x).detach()
    state = adapter_state_dict(model)

    fresh = apply_hf_peft(make_model(), lora(bias="all"))
    load_adapter_state_dict(fresh, state)
    for name, param in fresh.named_parameters():
        if name.endswith(".bias"):
            assert torch.equal(param, biases[name]), name
    assert torch.allclose(fresh(x), trained, atol=1e-5)
    with pytest.raises(ValueError, match=r"different HFPeft trained base tensors: only in the state \['blocks.0"):
        load_adapter_state_dict(apply_hf_peft(make_model(), lora()), state)
