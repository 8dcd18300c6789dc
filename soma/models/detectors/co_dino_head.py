"""The query head of Co-DINO: mmdet's ``DINOHead`` plus the losses of the positive query groups and soft-NMS."""
from __future__ import annotations

import torch
from mmcv.ops import batched_nms
from mmdet.models.dense_heads import DINOHead
from mmdet.models.losses import QualityFocalLoss
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor


@MODELS.register_module()
class CoDINOHead(DINOHead):
    """``DINOHead`` (one-to-one matching, denoising) that also scores Co-DETR's positive query groups.

    Training: the matching and denoising queries are scored as in DINO; :meth:`loss_positive_queries` scores
    a group of queries built from an auxiliary head's positive boxes against the targets that head assigned
    them (one-to-many), on every decoder layer, with the same classification/L1/GIoU losses. With
    ``loss_cls=dict(type="QualityFocalLoss")`` the classification target of a positive is the IoU of its
    predicted box with its target box (Co-DINO's choice), for all query kinds.

    Test: DINO's top-``max_per_img`` (class, query) pairs, then ``test_cfg.nms`` if given, e.g.
    ``dict(type="soft_nms", iou_threshold=0.8)`` (mmcv's ``batched_nms``: per class, linear decay, boxes
    whose score decays below 1e-3 are dropped).
    """

    def loss_by_feat_single(self, cls_scores: Tensor, bbox_preds: Tensor, batch_gt_instances: list,
                            batch_img_metas: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
        """Hungarian matching of one layer's queries (mmdet's ``get_targets``), then :meth:`loss_with_targets`."""
        num_imgs = cls_scores.size(0)
        labels, label_weights, bbox_targets, bbox_weights, num_pos, num_neg = self.get_targets(
            list(cls_scores), list(bbox_preds), batch_gt_instances, batch_img_metas)
        return self.loss_with_targets(
            cls_scores, bbox_preds, torch.cat(labels).view(num_imgs, -1), torch.cat(label_weights).view(num_imgs, -1),
            torch.cat(bbox_targets).view(num_imgs, -1, 4), torch.cat(bbox_weights).view(num_imgs, -1, 4),
            batch_img_metas, num_neg=num_neg)

    def loss_with_targets(self, cls_scores: Tensor, bbox_preds: Tensor, labels: Tensor, label_weights: Tensor,
                          bbox_targets: Tensor, bbox_weights: Tensor, batch_img_metas: list[dict],
                          num_neg: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Classification, L1 and IoU losses of queries whose targets are already assigned.

        Args:
            cls_scores: logits, (bs, num_queries, num_classes).
            bbox_preds: normalised (cx, cy, w, h) boxes, (bs, num_queries, 4).
            labels: class per query, ``num_classes`` for background, (bs, num_queries).
            label_weights: (bs, num_queries). bbox_targets: normalised (cx, cy, w, h), (bs, num_queries, 4).
            bbox_weights: 1 for the queries whose box is regressed, (bs, num_queries, 4).
            batch_img_metas: per image, for ``img_shape`` (boxes are scaled to pixels for the IoU loss).
            num_neg: negatives, for DETR's background weight; default: every non-positive query.
        """
        labels, label_weights = labels.reshape(-1), label_weights.reshape(-1)
        bbox_targets, bbox_weights = bbox_targets.reshape(-1, 4), bbox_weights.reshape(-1, 4)
        cls_scores, bbox_preds = cls_scores.reshape(-1, self.cls_out_channels), bbox_preds.reshape(-1, 4)
        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        num_pos = len(pos_inds)
        num_neg = len(labels) - num_pos if num_neg is None else num_neg

        cls_avg_factor = num_pos * 1.0 + num_neg * self.bg_cls_weight  # DETR's weighted average
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        if isinstance(self.loss_cls, QualityFocalLoss):
            quality = label_weights.new_zeros(labels.shape)
            quality[pos_inds] = bbox_overlaps(bbox_cxcywh_to_xyxy(bbox_preds[pos_inds]).detach(),
                                              bbox_cxcywh_to_xyxy(bbox_targets[pos_inds]), is_aligned=True)
            loss_cls = self.loss_cls(cls_scores, (labels, quality), label_weights, avg_factor=cls_avg_factor)
        else:
            loss_cls = self.loss_cls(cls_scores, labels, label_weights, avg_factor=cls_avg_factor)

        # the number of positives over all processes normalises the box losses
        num_pos = torch.clamp(reduce_mean(loss_cls.new_tensor([num_pos])), min=1).item()
        num_queries = len(labels) // len(batch_img_metas)
        factors = torch.cat([bbox_preds.new_tensor([w, h, w, h]).expand(num_queries, 4)
                             for h, w in (meta["img_shape"][:2] for meta in batch_img_metas)])
        loss_iou = self.loss_iou(bbox_cxcywh_to_xyxy(bbox_preds) * factors,
                                 bbox_cxcywh_to_xyxy(bbox_targets) * factors, bbox_weights, avg_factor=num_pos)
        loss_bbox = self.loss_bbox(bbox_preds, bbox_targets, bbox_weights, avg_factor=num_pos)
        return loss_cls, loss_bbox, loss_iou

    def loss_positive_queries(self, hidden_states: Tensor, references: list[Tensor], labels: Tensor,
                              label_weights: Tensor, bbox_targets: Tensor, bbox_weights: Tensor,
                              batch_img_metas: list[dict]) -> dict[str, Tensor]:
        """Losses of one positive query group on every decoder layer (last: ``loss_*``, others: ``d<i>.loss_*``).

        Args:
            hidden_states: the decoder's outputs for the group, (num_layers, bs, num_queries, dim).
            references: the decoder's reference boxes (``num_layers + 1`` tensors, (bs, num_queries, 4)).
            labels, label_weights, bbox_targets, bbox_weights: see :meth:`loss_with_targets`; the same for all layers.
        """
        all_cls_scores, all_bbox_preds = self(hidden_states, references)
        losses: dict[str, Tensor] = {}
        num_layers = len(all_cls_scores)
        for layer, (cls_scores, bbox_preds) in enumerate(zip(all_cls_scores, all_bbox_preds)):
            prefix = "" if layer == num_layers - 1 else f"d{layer}."
            loss_cls, loss_bbox, loss_iou = self.loss_with_targets(
                cls_scores, bbox_preds, labels, label_weights, bbox_targets, bbox_weights, batch_img_metas)
            losses.update({f"{prefix}loss_cls": loss_cls, f"{prefix}loss_bbox": loss_bbox,
                           f"{prefix}loss_iou": loss_iou})
        return losses

    def _predict_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        """DINO's top-k boxes, then ``test_cfg.nms`` (soft-NMS in Co-DINO) and at most ``max_per_img`` boxes."""
        results = super()._predict_by_feat_single(cls_score, bbox_pred, img_meta, rescale)
        nms_cfg = self.test_cfg.get("nms")
        if nms_cfg is None or len(results) == 0:
            return results
        dets, keep = batched_nms(results.bboxes, results.scores, results.labels, nms_cfg)
        results = results[keep]
        results.scores = dets[:, -1]  # soft-NMS lowers the scores of the boxes it keeps
        return results[:self.test_cfg.get("max_per_img", len(results))]
