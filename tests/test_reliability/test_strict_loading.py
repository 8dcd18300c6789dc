"""A checkpoint that does not fit the model is refused with its cause in words (soma.weights).

The wrong checkpoints a user meets: another architecture, another SoMA rank, an adapter-only file, a merged
checkpoint under a SoMA config, another class count, weights under a `model` key, a backbone-only file.
mmengine's Runner loaded all of them with ``strict=False`` and evaluated a partly random model;
tests/test_reliability/test_wrong_checkpoints_e2e.py runs them through tools/test.sh.
"""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from soma.peft import soma_state_dict
from soma.peft.state import ADAPTER_FORMAT
from soma.weights import CheckpointMismatchError, check_checkpoint_fits, config_changes, load_state_dict_checked

from ..conftest import tiny_segmentor_cfg


def build(width: int = 64, r: int | None = 4, num_classes: int = 4) -> torch.nn.Module:
    cfg = tiny_segmentor_cfg(num_classes=num_classes, peft=dict(type="SoMA", r=r, start_block=2) if r else None)
    if r is None:
        cfg.backbone.peft = None
    if width != 64:
        cfg.backbone.timm_kwargs = dict(embed_dim=width)
        cfg.decode_head.in_channels = [width] * 4
    torch.manual_seed(0)
    return MODELS.build(cfg)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build()


def adapter_file(model: torch.nn.Module) -> dict:
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    return dict(format=ADAPTER_FORMAT, backbone=soma_state_dict(model.backbone.vit), head=head, meta={})


WRONG_CHECKPOINTS = {
    "another_arch": (lambda m: dict(state_dict=build(width=96).state_dict()),
                     r"another backbone: embedding width 96 in the checkpoint vs 64 in the config"),
    "another_rank": (lambda m: dict(state_dict=build(r=2).state_dict()),
                     r"another SoMA rank: the checkpoint was trained with r=2, the config has r=4"),
    "adapter_only": (adapter_file, r"adapter-only file \(tools/extract_adapter.py\).*tools/merge_adapter.py"),
    "merged": (lambda m: dict(state_dict=build(r=None).state_dict(), meta=dict(merged=True)),
               r"no SoMA adapters \(its meta data says merged=True\).*model.backbone.peft=None"),
    "another_class_count": (lambda m: dict(state_dict=build(num_classes=7).state_dict()),
                            r"another number of classes: the checkpoint's decode_head has 7 classes, the config's 4"),
    "weights_under_model_key": (lambda m: dict(model=m.state_dict(), epoch=3),
                                r"keeps its weights under the key 'model', where .* under 'state_dict'; they fit the "
                                r"model: re-save them"),
    "backbone_only_as_load_from": (lambda m: plain_backbone_file(),
                                   r"backbone weights only \(\d+ tensors, named as in a plain ViT file, e.g. "
                                   r"'[^']+'\): .* belong in `model.backbone.init_cfg=dict\(type='Pretrained'"),
    "backbone_only_with_prefix": (lambda m: dict(state_dict={k: v for k, v in m.state_dict().items()
                                                             if k.startswith("backbone.")}),
                                  r"backbone weights only \(\d+ tensors, none of decode_head\)"),
}
# Causes that a case must not be given: only what actually differs is named.
NOT_THE_CAUSE = {
    "another_arch": ("rank",),  # the adapters' width changed with the embedding, not their rank
    "weights_under_model_key": ("merged", "backbone weights only"),
    "backbone_only_as_load_from": ("merged",),
    "backbone_only_with_prefix": ("merged",),
}


def plain_backbone_file() -> dict:
    """A pretrained backbone as released (timm's keys, no segmentor prefix, no adapters): what mmseg users put in
    `load_from`."""
    prefix = "backbone.vit."
    return {k[len(prefix):]: v for k, v in build(r=None).state_dict().items() if k.startswith(prefix)}


@pytest.mark.parametrize("case", sorted(WRONG_CHECKPOINTS))
def test_wrong_checkpoint_is_refused_with_its_cause(model, case):
    make, cause = WRONG_CHECKPOINTS[case]
    with pytest.raises(CheckpointMismatchError, match=cause) as error:
        check_checkpoint_fits(model, make(model), f"{case}.pth")
    message = str(error.value)
    assert message.startswith(f"checkpoint '{case}.pth' does not fit the config's model: of ")
    assert "(e.g. " in message and "--non-strict" in message
    assert message.count("Likely cause") == 1 and "r=4, the config has r=4" not in message  # no false causes
    for wrong in NOT_THE_CAUSE.get(case, ()):
        assert wrong not in message.partition("Likely cause")[2], wrong


def test_counts_and_first_names_are_given(model):
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_fits(model, dict(state_dict=build(r=2).state_dict()), "r2.pth")
    wrong = sum(1 for k in model.state_dict() if k.endswith((".lora_A", ".lora_B")))
    assert f"{wrong} of another shape (e.g. backbone.vit.blocks.2." in str(error.value)
    assert "in the checkpoint vs (" in str(error.value)


def test_a_checkpoint_that_fits_loads_exactly(model):
    saved = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    target = build()
    load_state_dict_checked(target, {"state_dict": dict(saved), "meta": {}}, "fits.pth")
    for key, value in target.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not check_checkpoint_fits(target, {f"module.{k}": v for k, v in saved.items()}, "ddp.pth")  # DDP keys


def test_non_strict_loads_what_fits_and_logs_the_rest(model, mm_log):
    other = build(num_classes=7).state_dict()
    target = build()
    before = target.decode_head.cls_embed.weight.clone()
    load_state_dict_checked(target, dict(state_dict=other), "classes7.pth", strict=False)
    logged = "\n".join(mm_log)
    assert "--non-strict: checkpoint 'classes7.pth' does not fit the config's model; loading the " in logged
    assert "NOT loaded (left at their initial values): 2 of another shape (e.g. decode_head.cls_embed" in logged
    assert torch.equal(target.decode_head.cls_embed.weight, before)  # wrong shape: left as it was
    key = "backbone.vit.blocks.2.attn.qkv.lora_A"
    assert torch.equal(target.state_dict()[key], other[key])  # everything that fits is loaded


def test_resume_message_names_the_changed_settings(model):
    saved = Config(dict(model=dict(type="SoMAEncoderDecoder", backbone=dict(peft=dict(type="SoMA", r=2))))).pretty_text
    current = dict(type="SoMAEncoderDecoder", backbone=dict(peft=dict(type="SoMA", r=4)))
    assert config_changes(saved, current) == ["model.backbone.peft.r: 2 → 4"]
    checkpoint = dict(state_dict=build(r=2).state_dict(), meta=dict(cfg=saved))
    with pytest.raises(CheckpointMismatchError, match=r"^--resume: the config no longer fits the checkpoint "
                       r"'iter_4.pth'.*changed since the checkpoint was written: model.backbone.peft.r: 2 → 4"):
        check_checkpoint_fits(model, checkpoint, "iter_4.pth", model_config=current, resuming=True)


def build_rein(**options) -> torch.nn.Module:
    """The tiny segmentor with Rein (4 blocks, 8 tokens of rank 4, no query link: the plain Mask2Former head)."""
    cfg = tiny_segmentor_cfg(peft=dict(dict(type="Rein", num_tokens=8, token_rank=4, link_queries=False), **options))
    torch.manual_seed(0)
    return MODELS.build(cfg)


@pytest.mark.parametrize("options, cause", [
    (dict(num_tokens=6), r"other Rein options: `model.backbone.peft.num_tokens` is 6 in the checkpoint vs 8 in the "
                         r"config"),
    (dict(start_block=2), r"other Rein options: `model.backbone.peft.start_block`/`end_block` is 2 refined blocks in "
                          r"the checkpoint vs 4 refined blocks \(0-3\) in the config"),
    (dict(token_rank=None), r"`model.backbone.peft.token_rank` is None in the checkpoint vs 4 in the config"),
])
def test_other_rein_options_are_named_not_taken_for_a_rank(options, cause):
    with pytest.raises(CheckpointMismatchError, match=cause) as error:
        check_checkpoint_fits(build_rein(), dict(state_dict=build_rein(**options).state_dict()), "rein.pth")
    assert "rank" not in str(error.value).replace("token_rank", "")

