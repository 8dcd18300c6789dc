"""Rein on a bare timm ViT (pure torch): config checks, what trains, the token factorisation, the refinement."""
import math

import pytest
import timm
import torch

from soma.peft import (PEFT_METHODS, ReinConfig, Reins, adapter_keys, adapter_state_dict, apply_rein,
                       initialize_rein, is_adapter_key, load_adapter_state_dict, rein_modules, state_adapter_keys)


def tiny_vit(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=64,
                             patch_size=16, embed_dim=64, depth=4, num_heads=2, **kwargs)


def test_config_round_trip_and_checks():
    config = ReinConfig(num_tokens=8, token_rank=4, start_block=1, end_block=3, link_queries=False)
    assert ReinConfig.from_dict(config.to_dict()) == config
    assert PEFT_METHODS["Rein"].config_class is ReinConfig
    with pytest.raises(ValueError, match="unknown Rein option.*'rank'"):
        ReinConfig.from_dict(dict(rank=4))
    for bad in (dict(num_tokens=1), dict(token_rank=0), dict(token_rank=True), dict(start_block=-1),
                dict(start_block=2, end_block=2), dict(query_dim=0), dict(scale_init=float("nan")),
                dict(link_queries="yes")):
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`|`end_block`"):
            ReinConfig(**bad)


def test_only_rein_trains_and_the_tokens_are_low_rank():
    vit = apply_rein(tiny_vit(), dict(num_tokens=8, token_rank=4, start_block=1, query_dim=32))
    reins = vit.rein
    assert rein_modules(vit) == {"rein": reins}
    trainable = {n for n, p in vit.named_parameters() if p.requires_grad}
    assert trainable == {f"rein.{n}" for n, _ in reins.named_parameters()}
    assert reins.refined_blocks == (1, 2, 3)
    assert reins.token_a.shape == (3, 8, 4) and reins.token_b.shape == (3, 4, 64)
    torch.testing.assert_close(reins.block_tokens(2), reins.token_a[1] @ reins.token_b[1])
    assert torch.linalg.matrix_rank(reins.block_tokens(2)) == 4
    assert reins.all_tokens().shape == (3, 8, 64)
    assert reins.decoder_query_shape == (8, 32) and reins.decoder_queries().shape == (8, 32)
    # the release's initialisation bound for low-rank tokens: sqrt(6 / (3·p² + sqrt(c·r)))
    bound = math.sqrt(6 / (3 * 16 * 16 + math.sqrt(64 * 4)))
    assert reins.token_a.abs().max() <= bound and reins.token_a.abs().max() > 0.8 * bound
    assert reins.scale.item() == pytest.approx(1e-3)


def test_full_tokens_and_no_query_link():
    vit = apply_rein(tiny_vit(), ReinConfig(num_tokens=8, token_rank=None, link_queries=False))
    names = {n for n, _ in vit.rein.named_parameters()}
    assert names == {"tokens", "scale", "token_mlp.weight", "token_mlp.bias", "feature_mlp.weight",
                     "feature_mlp.bias"}  # no query layers: DDP would find them unused
    assert vit.rein.tokens.shape == (4, 8, 64) and vit.rein.decoder_query_shape is None
    with pytest.raises(RuntimeError, match="link_queries=False"):
        vit.rein.decoder_queries()


def test_wrong_uses_are_refused():
    vit = apply_rein(tiny_vit(), ReinConfig(num_tokens=8))
    with pytest.raises(ValueError, match="already applied"):
        apply_rein(vit, ReinConfig(num_tokens=8))
    with pytest.raises(ValueError, match=r"\[2, 6\) does not fit the model's 4 blocks"):
        apply_rein(tiny_vit(), ReinConfig(start_block=2, end_block=6))
    with pytest.raises(ValueError, match="timm ViT"):
        apply_rein(torch.nn.Linear(4, 4), ReinConfig())
    with pytest.raises(ValueError, match="no Rein module"):
        initialize_rein(tiny_vit())


def test_refinement_follows_the_paper_and_leaves_prefix_tokens():
    reins = apply_rein(tiny_vit(), ReinConfig(num_tokens=8, token_rank=4)).rein
    with torch.no_grad():
        reins.scale.fill_(0.5)  # a visible refinement
    tokens = torch.randn(2, 1 + 16, 64)
    refined = reins.refine(tokens, 2, num_prefix_tokens=1, grid_size=(4, 4))
    assert torch.equal(refined[:, :1], tokens[:, :1])
    features, t = tokens[:, 1:], reins.token_a[2] @ reins.token_b[2]
    similarity = torch.softmax(features @ t.T / 8.0, dim=-1)  # over the tokens, scaled by 1/sqrt(c)
    weighted = similarity[..., 1:] @ (t[1:] @ reins.token_mlp.weight.T + reins.token_mlp.bias)
    expected = features + 0.5 * ((weighted + features) @ reins.feature_mlp.weight.T + reins.feature_mlp.bias)
    torch.testing.assert_close(refined[:, 1:], expected)


def test_initialisation_waits_for_initialize_and_is_close_to_identity():
    """``initialize=False``: all zero, the identity; after initialize: scale 1e-3 · MLP_f(...), small but not 0."""
    reins = apply_rein(tiny_vit(), ReinConfig(num_tokens=8), initialize=False).rein
    assert all(not p.any() for p in reins.parameters())
    tokens = torch.randn(2, 17, 64)
    assert torch.equal(reins.refine(tokens, 0, 1, (4, 4)), tokens)
    torch.manual_seed(1)
    initialize_rein(reins)
    change = (reins.refine(tokens, 0, 1, (4, 4)) - tokens).abs().max()
    assert 0 < change < 1e-2


def test_identity_init_starts_exactly_at_the_pretrained_features():
    reins = apply_rein(tiny_vit(), ReinConfig(num_tokens=8, identity_init=True)).rein
    assert reins.scale is None and "scale" not in dict(reins.named_parameters())
    assert reins.token_a.abs().sum() > 0  # tokens are drawn; only MLP_f starts at zero
    tokens = torch.randn(2, 17, 64)
    assert torch.equal(reins.refine(tokens, 1, 1, (4, 4)), tokens)


def test_queries_pool_every_refined_block():
    reins = apply_rein(tiny_vit(), ReinConfig(num_tokens=8, query_dim=16)).rein
    queries = reins.decoder_queries()
    queries.sum().backward()
    assert all(reins.token_a.grad[layer].abs().sum() > 0 for layer in range(4))
    assert reins.token_mlp.weight.grad is None  # the queries use only the tokens and the query layers
    assert isinstance(reins, Reins)


REIN = dict(num_tokens=8, token_rank=4, start_block=1, query_dim=32)


def test_adapter_files_carry_the_config_and_name_the_options_that_differ():
    config = ReinConfig(**REIN)
    vit = apply_rein(tiny_vit(), config)
    state = adapter_state_dict(vit)
    assert state["method"] == "Rein" and ReinConfig.from_dict(state["config"]) == config
    fresh = apply_rein(tiny_vit(), ReinConfig(**REIN), initialize=False)
    load_adapter_state_dict(fresh, state)
    assert torch.equal(fresh.rein.token_a, vit.rein.token_a)
    for change, named in ((dict(num_tokens=6), r"num_tokens=8 \(the model: 6\)"),
                          (dict(start_block=0), r"start_block/end_block=3 refined blocks \(the model: 4 refined "
                                                r"blocks \(0-3\)\)"),
                          (dict(link_queries=False), r"link_queries=True \(the model: False\)")):
        with pytest.raises(ValueError, match=r"^module 'rein': the adapter was saved with other Rein options: "
                                             f"{named}.*config stored in the file"):
            load_adapter_state_dict(apply_rein(tiny_vit(), dict(REIN, **change)), state)


def test_rein_is_not_applied_over_another_adapter_method():
    from soma.peft import apply_soma

    vit = apply_soma(tiny_vit(), dict(r=2, start_block=2))
    with pytest.raises(ValueError, match="adapters are already applied"):
        apply_rein(vit, ReinConfig(**REIN))


def test_adapter_keys_are_found_through_the_adapters_not_by_their_names():
    """Every tensor of Rein's module is an adapter key (its MLPs too); a base module called `tokens` is none."""
    vit = apply_rein(tiny_vit(), ReinConfig(**REIN))
    vit.tokens = torch.nn.Embedding(4, 64)
    rein_keys = {f"rein.{name}" for name in vit.rein.state_dict()}
    assert adapter_keys(vit) == dict.fromkeys(rein_keys, "rein")
    # without the model (a checkpoint's keys): Rein's token tensors mark the module, which claims its other keys
    assert state_adapter_keys(f"backbone.vit.{key}" for key in vit.state_dict()) == \
        {f"backbone.vit.{key}": "backbone.vit.rein" for key in rein_keys}
    assert not is_adapter_key("decode_head.tokens.weight")
