"""Rein in the backbone and the segmentor: refiners run after their blocks, gradients reach the tokens through the
features and through the query link, training moves only Rein and the head, and the trained state reloads."""
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

from soma.models import DINOv2
from soma.utils import ConfigError
from soma.config.run import resolve_amp

from ..conftest import REPO
from .test_segmentor import make_batch

REIN_CONFIG = REPO / "configs/rein/rein_dinov2-l_gta2cbm-512.py"
TINY_REIN = dict(type="Rein", num_tokens=8, token_rank=4, query_dim=32)  # the tiny head: 8 queries of width 32


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny "pretrained" DINOv2 with non-trivial layer scales, saved as a timm state dict."""
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=64,
                              patch_size=16, embed_dim=64, depth=4, num_heads=2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    path = tmp_path_factory.mktemp("rein") / "pretrained.pth"
    torch.save(model.state_dict(), path)
    return path


def backbone(checkpoint, rein: dict | None) -> DINOv2:
    """The tiny DINOv2 with ``TINY_REIN`` updated by ``rein``, or frozen without Rein for ``rein=None``."""
    model = DINOv2(arch="tiny", img_size=64, patch_size=16, out_indices=(1, 3), out_scales=None,
                   peft=None if rein is None else dict(TINY_REIN, **rein), frozen=True if rein is None else None,
                   init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)))
    model.init_weights()
    return model


def rein_segmentor(checkpoint=None, **peft):
    from tests.conftest import tiny_segmentor_cfg

    cfg = tiny_segmentor_cfg(peft=dict(TINY_REIN, **peft), checkpoint=str(checkpoint) if checkpoint else None)
    cfg.decode_head.type = "ReinMask2FormerHead"
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_backbone_loads_pretrained_weights_and_refines_close_to_them(pretrained):
    frozen = backbone(pretrained, None).eval()
    refined = backbone(pretrained, dict(start_block=0)).eval()
    identity = backbone(pretrained, dict(start_block=0, identity_init=True)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain, out, same = frozen(x), refined(x), identity(x)
    for a, b, c in zip(plain, out, same):
        assert torch.equal(a, c)  # identity_init: exactly the pretrained features
        difference = (a - b).abs().max()
        assert 0 < difference < 0.05 * a.abs().max()  # the released init: a small refinement (scale 1e-3)


def test_refiner_blocks_count_as_trained_and_earlier_blocks_run_without_grad(pretrained):
    model = backbone(pretrained, dict(start_block=2)).train()
    assert model._find_first_trained_block() == 2
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f"vit.rein.{n}" for n, _ in model.vit.rein.named_parameters()}
    assert [b.training for b in model.vit.blocks] == [False, False, True, True] and model.vit.rein.training
    features = model(torch.randn(2, 3, 64, 64))
    assert not features[0].requires_grad  # block 1's output: before any refiner, computed without autograd
    sum(f.mean() for f in features).backward()
    rein = model.vit.rein
    assert rein.token_a.grad[0].abs().sum() > 0 and rein.token_b.grad[1].abs().sum() > 0  # blocks 2 and 3
    assert rein.token_mlp.weight.grad.abs().sum() > 0 and rein.scale.grad != 0
    assert rein.query_proj.weight.grad is None  # the features do not use the queries


def test_segmentor_passes_linked_queries_and_gradient_reaches_tokens_through_them():
    torch.manual_seed(0)
    model = rein_segmentor().train()
    data = model.data_preprocessor(make_batch(), True)
    loss, _ = model.parse_losses(model(**data, mode="loss"))
    loss.backward()
    rein = model.backbone.vit.rein
    # query_proj/query_merge are used only by the link: their gradient comes from the decode loss through the
    # head's queries
    assert rein.query_merge.weight.grad.abs().sum() > 0 and rein.query_proj.weight.grad.abs().sum() > 0
    assert model.decode_head.queries_to_feat.weight.grad.abs().sum() > 0
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused  # DDP without find_unused_parameters
    assert model.decode_head.query_embed.weight is None  # no graph is kept on the head between passes

    # the head's output depends on the tokens through the queries alone: change only the query layers
    model.eval()
    with torch.no_grad():
        before = model.predict(data["inputs"][:1], data["data_samples"][:1])[0].seg_logits.data.clone()
        rein.query_merge.bias.add_(1.0)
        after = model.predict(data["inputs"][:1], data["data_samples"][:1])[0].seg_logits.data
    assert not torch.allclose(before, after)


def test_link_and_head_must_agree(tiny_segmentor_config):
    plain_head = tiny_segmentor_config(peft=TINY_REIN)
    with pytest.raises(ConfigError, match="ReinMask2FormerHead"):
        MODELS.build(plain_head)
    MODELS.build(tiny_segmentor_config(peft=dict(TINY_REIN, link_queries=False)))  # plain head, no link: fine
    learned_feat = tiny_segmentor_config(peft=TINY_REIN)
    learned_feat.decode_head.update(type="ReinMask2FormerHead", replace_query_feat=False)
    model = MODELS.build(learned_feat).eval()  # linked positional queries, learned initial query features
    model.init_weights()
    assert isinstance(model.decode_head.query_feat, torch.nn.Embedding)
    sample = make_batch(num_images=1)
    with torch.no_grad():
        data = model.data_preprocessor(sample, False)
        assert model.predict(data["inputs"], data["data_samples"])[0].seg_logits.data.shape == (4, 64, 64)
    soma_backbone = tiny_segmentor_config()
    soma_backbone.decode_head.type = "ReinMask2FormerHead"
    with pytest.raises(ConfigError, match="gives none"):
        MODELS.build(soma_backbone)
    wrong_count = tiny_segmentor_config(peft=dict(TINY_REIN, num_tokens=10))
    wrong_count.decode_head.type = "ReinMask2FormerHead"
    with pytest.raises(ConfigError, match="10 queries of width 32.*num_queries=8"):
        MODELS.build(wrong_count)


def test_two_training_iterations_with_the_rein_recipe_move_only_rein_and_the_head(pretrained):
    torch.manual_seed(0)
    model = rein_segmentor(pretrained)
    recipe = Config.fromfile(str(REIN_CONFIG))
    wrapper = build_optim_wrapper(model, resolve_amp(recipe.optim_wrapper, device="cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(p)]: g for g in wrapper.optimizer.param_groups for p in g["params"]}
    assert groups["backbone.vit.rein.token_a"]["weight_decay"] == 0.0
    assert groups["backbone.vit.rein.scale"]["weight_decay"] == 0.0
    assert groups["backbone.vit.rein.token_mlp.weight"]["weight_decay"] == 0.05
    assert groups["backbone.vit.rein.token_mlp.weight"]["lr"] == 1e-4  # no backbone multiplier in Rein's recipe
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    batch = make_batch()
    for _ in range(2):
        model.train_step(batch, wrapper)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(("backbone.vit.rein.", "decode_head.")) for n in changed), changed
    assert {n for n in changed if n.startswith("backbone.")} == {
        f"backbone.vit.rein.{n}" for n, _ in model.backbone.vit.rein.named_parameters()}

    # the trained Rein tensors and head, loaded into a fresh model on the same pretrained weights, give the same
    # predictions
    torch.manual_seed(1)
    fresh = rein_segmentor(pretrained)
    model.eval(), fresh.eval()
    test_batch = make_batch(num_images=1, size=64, seed=3)
    with torch.no_grad():
        expected = model.test_step(test_batch)[0].seg_logits.data
        assert not torch.allclose(fresh.test_step(test_batch)[0].seg_logits.data, expected)
        fresh.backbone.vit.rein.load_state_dict(model.backbone.vit.rein.state_dict())
        fresh.decode_head.load_state_dict(model.decode_head.state_dict())
        assert torch.equal(fresh.test_step(test_batch)[0].seg_logits.data, expected)


def test_large_trainable_parameter_count():
    """DINOv2-L, 100 tokens of rank 16 on all 24 blocks: 2,990,081 (the paper's 2.99M)."""
    with torch.device("meta"):
        model = DINOv2(arch="large", img_size=512, peft=dict(type="Rein", num_tokens=100, token_rank=16))
    counts = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    tokens = 24 * (100 * 16 + 16 * 1024)
    mlps = 2 * (1024 * 1024 + 1024)
    queries = (1024 * 256 + 256) + (3 * 256 * 256 + 256)
    assert all(n.startswith("vit.rein.") for n in counts)
    assert sum(counts.values()) == tokens + mlps + 1 + queries == 2_990_081


@pytest.mark.parametrize("family", ["DINOv2", "EVA02", "DINOv3"])
def test_every_family_calls_the_refiner_after_each_block_with_its_prefix_and_grid(family):
    import soma.models

    cls = getattr(soma.models, family)
    model = cls(arch="tiny", img_size=64, patch_size=16, out_indices=(1, 3), out_scales=None,
                peft=dict(TINY_REIN, start_block=1))
    model.init_weights()
    calls = []
    refine = model.vit.rein.refine

    def spy(tokens, block_index, num_prefix_tokens, grid_size):
        calls.append((block_index, num_prefix_tokens, grid_size, tokens.shape[1]))
        return refine(tokens, block_index, num_prefix_tokens, grid_size)

    model.vit.rein.refine = spy
    features = model(torch.randn(1, 3, 64, 48))
    prefix = model.vit.num_prefix_tokens
    assert calls == [(i, prefix, (4, 3), prefix + 12) for i in (1, 2, 3)]
    assert [tuple(f.shape) for f in features] == [(1, 64, 4, 3)] * 2
