"""The adapter protocol: adapter modules next to adapter layers, generic finding/merging/saving, adapter keys."""
import pytest
import torch
import torch.nn as nn

from soma.peft import (AdapterModule, SoMAConfig, adapter_key_layer, adapter_layers, adapter_modules,
                       adapter_state_dict, adapter_tensor_names, apply_soma, is_adapter_key, load_adapter_state_dict,
                       mark_only_adapters_trainable, merge_adapters, trainable_parameters, unload_adapters)

from .test_model import CONFIG, make_model


class Tokens(AdapterModule):
    """A Rein-like adapter module: learnable tokens added to the features.

    Its tensor name marks adapter keys only inside the tests that use :func:`tokens_class`: a class declared here
    would otherwise make ``*.learnable_tokens`` adapter keys for every later test of the session.
    """

    method_name = "Tokens"
    adapter_tensor_names = ()

    def __init__(self, dim=16, count=3):
        super().__init__()
        self.learnable_tokens = nn.Parameter(torch.zeros(count, dim))

    def forward(self, x):
        return x + self.learnable_tokens.mean(0)


@pytest.fixture
def tokens_class(monkeypatch):
    """:class:`Tokens` declaring its tensor name for one test; monkeypatch takes the declaration back after it."""
    monkeypatch.setattr(Tokens, "adapter_tensor_names", ("learnable_tokens",))
    return Tokens


def adapted_model(seed=0):
    model = apply_soma(make_model(seed), CONFIG)
    model.tokens = Tokens()
    mark_only_adapters_trainable(model)
    return model


def run(model, x):
    return model.tokens(model(x))


def test_modules_are_trained_saved_and_never_merged():
    model = adapted_model()
    assert list(adapter_modules(model)) == ["tokens"]
    assert model.tokens.learnable_tokens.requires_grad and not model.embed.weight.requires_grad
    summary = trainable_parameters(model)
    assert summary.adapter == trainable_parameters(apply_soma(make_model(), CONFIG)).adapter + 3 * 16
    with torch.no_grad():
        model.tokens.learnable_tokens.add_(0.3)
        for layer in adapter_layers(model).values():
            layer.lora_B.add_(0.05)
    x = torch.randn(2, 5, 8)
    trained = run(model, x).detach()
    state = adapter_state_dict(model)
    assert state["modules"] == {"tokens": {"learnable_tokens": [3, 16]}}
    assert "tokens.learnable_tokens" in state["adapters"]

    fresh = adapted_model()
    merge_adapters(fresh)
    load_adapter_state_dict(fresh, state)
    assert torch.allclose(run(fresh, x), trained, atol=1e-5)
    unload_adapters(fresh)
    assert not adapter_layers(fresh) and list(adapter_modules(fresh)) == ["tokens"]  # modules stay
    assert torch.allclose(run(fresh, x), trained, atol=1e-5)

    other = adapted_model()
    other.tokens = Tokens(count=4)
    with pytest.raises(ValueError, match="module 'tokens': the adapter has learnable_tokens=\\[3, 16\\]"):
        load_adapter_state_dict(other, state)


def test_layer_facts_and_names_are_checked():
    state = adapter_state_dict(apply_soma(make_model(), CONFIG))
    assert state["format_version"] == 4 and state["method"] == "SoMA"
    assert state["layers"]["blocks.2.attn.qkv"]["type"] == "SoMALinear"
    with pytest.raises(ValueError, match="the adapter has init='minor' but the model has 'principal'"):
        load_adapter_state_dict(apply_soma(make_model(), SoMAConfig(**CONFIG, init="principal")), state)
    with pytest.raises(ValueError, match="reads 4"):
        load_adapter_state_dict(apply_soma(make_model(), CONFIG), dict(state, format_version=2))


def test_adapter_keys_by_name(tokens_class):
    assert adapter_key_layer("backbone.vit.blocks.8.attn.qkv.lora_A") == "backbone.vit.blocks.8.attn.qkv"
    assert adapter_key_layer("blocks.8.mlp.fc1.lora_magnitude") == "blocks.8.mlp.fc1"
    assert is_adapter_key("backbone.tokens.learnable_tokens")  # a module class that names its tensors
    assert not is_adapter_key("backbone.vit.blocks.8.attn.qkv.base_layer.weight")
    assert not is_adapter_key("backbone.vit.blocks.8.attn.qkv.weight")


def test_test_adapter_classes_do_not_leak_into_other_tests():
    assert "learnable_tokens" not in adapter_tensor_names()
    assert not is_adapter_key("backbone.tokens.learnable_tokens")


def test_already_adapted_layers_are_refused_for_any_method():
    from soma.peft import apply_dora

    model = apply_soma(make_model(), CONFIG)
    with pytest.raises(ValueError, match="already applied"):
        apply_dora(model, dict(CONFIG))
