"""Co-DINO (soma.models.detectors) at test size on CPU: losses, gradients, positive query groups, soft-NMS, errors."""
from __future__ import annotations

import copy
import re

import pytest
import torch
from mmengine.config import Config

from ..conftest import REPO
from .tiny_codino_config import TINY_CODINO

AUX_LOSSES = {"loss_rpn_cls", "loss_rpn_bbox", "roi.loss_cls", "roi.loss_bbox", "roi.acc", "atss.loss_cls",
              "atss.loss_bbox", "atss.loss_centerness"}
GROUP_LOSSES = {f"pos_{head}.{layer}loss_{kind}" for head in ("roi", "atss") for layer in ("", "d0.")
                for kind in ("cls", "bbox", "iou")}


@pytest.fixture
def tiny_cfg(tmp_path):
    path = tmp_path / "tiny_codino.py"
    path.write_text(TINY_CODINO.format(repo=REPO, data=tmp_path / "dwd", iters=2))
    return Config.fromfile(str(path))


def build(model_cfg):
    from mmdet.registry import MODELS

    import soma.models  # noqa: F401  (registers CoDINO)

    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(model_cfg))
    model.init_weights()
    return model


def tiny_batch(num_images: int = 2, size: int = 64):
    """Normalised images and data samples with 1..num_images boxes each (a car, then a person)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[4.0, 20.0, 34.0, 40.0], [50.0, 8.0, 58.0, 40.0], [10.0, 2.0, 30.0, 16.0]])
    labels = torch.tensor([2, 4, 0])
    samples = []
    for i in range(num_images):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                                             batch_input_shape=(size, size), scale_factor=(1.0, 1.0), img_id=i))
        sample.gt_instances = InstanceData(bboxes=boxes[:i + 1].clone(), labels=labels[:i + 1].clone())
        samples.append(sample)
    return torch.randn(num_images, 3, size, size, generator=generator), samples


def test_losses_of_every_head_and_group_and_their_gradients(tiny_cfg, mmdet_scope):
    model = build(tiny_cfg.model)
    assert type(model).__name__ == "CoDINO" and model.group_names == ["roi", "atss"]
    inputs, samples = tiny_batch()
    losses = model.loss(inputs, samples)
    assert AUX_LOSSES | GROUP_LOSSES <= set(losses)
    assert {"loss_cls", "loss_iou", "d0.loss_cls", "enc_loss_cls", "dn_loss_cls"} <= set(losses)  # DINO's own
    total = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()

    def grad_norm(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    for name, module in {"rpn_head": model.rpn_head, "roi_head": model.roi_head, "atss": model.aux_heads[0],
                         "aux_downsample": model.aux_downsample, "roi group": model.positive_query_embeds[0],
                         "atss group": model.positive_query_embeds[1], "decoder": model.decoder,
                         "encoder": model.encoder, "neck": model.neck}.items():
        assert grad_norm(module) > 0, f"{name} got no gradient"
    adapters = [p for n, p in model.backbone.named_parameters() if p.requires_grad and "bias" not in n]
    assert adapters and any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)


def test_auxiliary_heads_get_their_own_initialisation(tiny_cfg, mmdet_scope):
    """mmdet's init_cfg of every auxiliary head runs (e.g. ATSS's classification prior of 0.01)."""
    from mmengine.model import bias_init_with_prob

    model = build(tiny_cfg.model)
    assert torch.allclose(model.aux_heads[0].atss_cls.bias, torch.tensor(bias_init_with_prob(0.01)))
    assert model.rpn_head.rpn_cls.weight.std() < 0.02 and model.roi_head.bbox_head.fc_reg.weight.std() < 0.002


def test_auxiliary_losses_alone_reach_encoder_and_decoder(tiny_cfg, mmdet_scope):
    """The auxiliary heads train the encoder (their input); the positive groups train the decoder."""
    model = build(tiny_cfg.model)
    losses = model.loss(*tiny_batch())
    atss = sum(sum(losses[k]) for k in ("atss.loss_cls", "atss.loss_bbox", "atss.loss_centerness"))
    group = sum(v for k, v in losses.items() if k.startswith("pos_atss."))
    encoder_grads = torch.autograd.grad(atss, list(model.encoder.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    decoder_grads = torch.autograd.grad(group, list(model.decoder.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in decoder_grads)


def test_positive_query_groups_reach_the_decoder(tiny_cfg, mmdet_scope):
    """One decoder run per group, with as many positive queries as the auxiliary head assigned (capped)."""
    model = build(tiny_cfg.model)
    num_classes, cap = model.bbox_head.num_classes, model.max_positive_queries
    assignments, groups, decoder_queries = [], [], []
    for head in (model.roi_head, model.aux_heads[0]):
        original = head.loss_and_positives

        def record(*args, _original=original, **kwargs):
            losses, positives = _original(*args, **kwargs)
            assignments.append(positives)
            return losses, positives
        head.loss_and_positives = record
    original_group = model.positive_query_group
    model.positive_query_group = lambda *a, **k: groups.append(original_group(*a, **k)) or groups[-1]
    model.decoder.register_forward_pre_hook(lambda m, args, kwargs: decoder_queries.append(kwargs["query"].shape),
                                            with_kwargs=True)
    inputs, samples = tiny_batch(num_images=3)
    model.loss(inputs, samples)

    assert len(decoder_queries) == 1 + 2  # matching/denoising queries, then the RoI and ATSS groups
    for positives, group, query_shape in zip(assignments, groups, decoder_queries[1:]):
        per_image = positives.num_positives(num_classes)
        assert sum(per_image) > 0
        size = max(min(max(per_image), cap), model.min_positive_queries)
        assert query_shape == (3, size, model.embed_dims)
        assert group["num_positives"].tolist() == [min(n, cap) for n in per_image]
        assert (group["labels"] < num_classes).sum(1).tolist() == [min(n, cap) for n in per_image]
        assert group["bbox_weights"][..., 0].sum(1).tolist() == [min(n, cap) for n in per_image]
        assert ((group["reference_points"] >= 0) & (group["reference_points"] <= 1)).all()


def test_query_head_loss_equals_dino_head(tiny_cfg, mmdet_scope):
    """The one-to-one loss goes through CoDINOHead.loss_with_targets and matches mmdet's DINOHead exactly."""
    from mmdet.models.dense_heads import DINOHead
    from mmdet.registry import MODELS

    head_cfg = dict(tiny_cfg.model.bbox_head, train_cfg=tiny_cfg.model.train_cfg, test_cfg=tiny_cfg.model.test_cfg,
                    num_pred_layer=3, as_two_stage=True)
    co_head = MODELS.build(copy.deepcopy(head_cfg))
    dino_head = MODELS.build(dict(copy.deepcopy(head_cfg), type="DINOHead"))
    assert isinstance(co_head, DINOHead)
    _, samples = tiny_batch(num_images=2)
    torch.manual_seed(1)
    cls_scores, bbox_preds = torch.randn(2, 30, 7), torch.rand(2, 30, 4) * 0.5 + 0.25
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]
    for ours, reference in zip(co_head.loss_by_feat_single(cls_scores, bbox_preds, gts, metas),
                               dino_head.loss_by_feat_single(cls_scores, bbox_preds, gts, metas)):
        torch.testing.assert_close(ours, reference)


def test_soft_nms_removes_overlapping_boxes(tiny_cfg, mmdet_scope):
    from mmdet.registry import MODELS

    soft_nms = dict(type="soft_nms", iou_threshold=0.8)
    head = MODELS.build(dict(tiny_cfg.model.bbox_head, test_cfg=dict(max_per_img=4, nms=soft_nms)))
    cls_score = torch.full((4, 7), -20.0)
    for query, label, score in ((0, 2, 0.9), (1, 2, 0.05), (2, 4, 0.8), (3, 2, 0.7)):
        cls_score[query, label] = torch.logit(torch.tensor(score))
    # query 1 is query 0 moved by 0.1 px (IoU 0.995): soft-NMS decays its score below 1e-3, which drops it;
    # query 2 is the same box in another class (kept), query 3 a box elsewhere (kept)
    bbox_pred = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.501, 0.5, 0.4, 0.4], [0.5, 0.5, 0.4, 0.4],
                              [0.2, 0.2, 0.1, 0.1]])
    meta = dict(img_shape=(100, 100), scale_factor=(1.0, 1.0))
    kept = head._predict_by_feat_single(cls_score, bbox_pred, meta)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.8, 0.7], abs=1e-4)
    assert kept.labels.tolist() == [2, 4, 2]

    head.test_cfg = dict(max_per_img=4)  # DINO's post-processing: the duplicate stays
    plain = head._predict_by_feat_single(cls_score, bbox_pred, meta)
    assert plain.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.05], abs=1e-4)

    head.test_cfg = dict(max_per_img=2, nms=soft_nms)  # at most max_per_img boxes after NMS
    assert len(head._predict_by_feat_single(cls_score, bbox_pred, meta)) == 2


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.aux_heads[0].anchor_generator.update(strides=[8, 16, 32, 64, 128]), "anchors for 5 feature levels"),
    (lambda m: m.neck.update(num_outs=4), "num_outs"),
    (lambda m: m.decoder.layer_cfg.cross_attn_cfg.update(num_levels=4), "cross_attn_cfg.num_levels=4"),
    (lambda m: m.update(rpn_head=None), "needs an `rpn_head`"),
    (lambda m: m.roi_head.bbox_head.update(num_classes=3), "`roi_head` has 3 classes"),
    (lambda m: m.aux_heads[0].update(type="ATSSHead"), "no `loss_and_positives`"),
], ids=["aux-head-levels", "neck-levels", "decoder-levels", "roi-without-rpn", "classes", "plain-atss"])
def test_mismatched_configs_raise_named_errors(tiny_cfg, mmdet_scope, edit, message):
    model_cfg = copy.deepcopy(tiny_cfg.model)
    edit(model_cfg)
    with pytest.raises(ValueError, match=re.escape(message)):
        build(model_cfg)


def test_anchor_strides_must_match_the_feature_strides(tiny_cfg, mmdet_scope):
    model_cfg = copy.deepcopy(tiny_cfg.model)
    model_cfg.aux_heads[0].anchor_generator.strides = [8, 16, 32, 64, 128, 256]  # one level off
    model = build(model_cfg)
    with pytest.raises(ValueError, match="places its anchors at stride 8"):
        model.loss(*tiny_batch())


def test_images_without_boxes_still_train(tiny_cfg, mmdet_scope):
    """Crops without objects are kept (allow_negative_crop): every loss stays finite, groups are all negatives."""
    model = build(tiny_cfg.model)
    inputs, samples = tiny_batch(num_images=2)
    for sample in samples:
        sample.gt_instances = sample.gt_instances[:0]
    losses = model.loss(inputs, samples)
    assert GROUP_LOSSES <= set(losses)
    for key, value in losses.items():
        assert all(torch.isfinite(v) for v in (value if isinstance(value, list) else [value])), key


def test_extract_then_merge_adapter_reproduces_outputs(tiny_cfg, tmp_path, mmdet_scope):
    """tools/extract_adapter.py and tools/merge_adapter.py work on a Co-DINO (mmdet) config."""
    import timm

    from soma.apis.adapters import extract_adapter, merge_adapter
    from soma.peft import soma_layers

    torch.manual_seed(0)
    base = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56,
                             embed_dim=64, depth=4, num_heads=2)
    torch.save(base.state_dict(), tmp_path / "base.pth")
    config = tmp_path / "tiny_codino.py"
    config.write_text(TINY_CODINO.format(repo=REPO, data=tmp_path / "dwd", iters=2) + (
        f'model["backbone"]["init_cfg"] = dict(type="Pretrained", checkpoint="{tmp_path / "base.pth"}")\n'))
    cfg = Config.fromfile(str(config))
    trained = build(cfg.model)
    with torch.no_grad():  # stand-in for training: move every trainable tensor
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01 * torch.randn_like(parameter))
    torch.save(dict(state_dict=trained.state_dict()), tmp_path / "trained.pth")

    extract_adapter(str(config), str(tmp_path / "trained.pth"), str(tmp_path / "adapter.pth"))
    merge_adapter(str(config), str(tmp_path / "adapter.pth"), str(tmp_path / "merged.pth"))
    cfg.model.backbone.update(init_cfg=None, peft=None)
    merged = build(cfg.model)
    merged.load_state_dict(torch.load(tmp_path / "merged.pth", weights_only=True)["state_dict"])
    assert soma_layers(trained) and not soma_layers(merged)
    inputs, samples = tiny_batch(num_images=1)
    with torch.no_grad():
        expected = trained.eval()._forward(inputs, samples)
        got = merged.eval()._forward(inputs, samples)
    for ours, reference in zip(got, expected):
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
