"""Co-DETR's auxiliary heads: mmdet's ATSS head and Faster R-CNN RoI head that also return their positives.

Co-DETR trains these heads one-to-many on the DETR encoder's output and feeds the boxes they assign to
objects back to the decoder as extra positive queries (see :class:`~soma.models.detectors.CoDINO`). Each head
here adds one method, ``loss_and_positives``, which computes exactly the parent's loss and also returns the
assignment it used as :class:`AuxPositives`; everything else (training, test) is mmdet's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from mmdet.models.dense_heads import ATSSHead
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.utils import multi_apply, unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor


@dataclass
class AuxPositives:
    """One auxiliary head's assignment for a batch, per image, in input-image pixels.

    Attributes:
        priors: (n_i, 4) xyxy boxes the head scored: anchors (ATSS) or sampled proposals (RoI head).
        labels: (n_i,) the class each prior was assigned; ``num_classes`` for background.
        targets: (n_i, 4) xyxy ground-truth box of each positive prior (anything for background).
    """

    priors: list[Tensor]
    labels: list[Tensor]
    targets: list[Tensor]

    def num_positives(self, num_classes: int) -> list[int]:
        """Positive priors per image."""
        return [int((labels < num_classes).sum()) for labels in self.labels]


@MODELS.register_module()
class CoATSSHead(ATSSHead):
    """ATSS head whose ``loss_and_positives`` also returns its anchor assignment (boxes are regressed decoded)."""

    def loss_and_positives(self, x: tuple[Tensor, ...], batch_data_samples: SampleList
                           ) -> tuple[dict[str, list[Tensor]], AuxPositives]:
        """``ATSSHead.loss`` (one assignment for both) and the anchors it assigned, per image."""
        cls_scores, bbox_preds, centernesses = self(x)
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = unpack_gt_instances(batch_data_samples)
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(
            [featmap.shape[-2:] for featmap in bbox_preds], batch_img_metas, device=device)
        anchors, labels, label_weights, bbox_targets, _, avg_factor = self.get_targets(
            anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)

        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float, device=device)).item()
        losses_cls, losses_bbox, losses_centerness, bbox_avg_factor = multi_apply(
            self.loss_by_feat_single, anchors, cls_scores, bbox_preds, centernesses, labels, label_weights,
            bbox_targets, avg_factor=avg_factor)
        bbox_avg_factor = reduce_mean(sum(bbox_avg_factor)).clamp_(min=1).item()
        losses = dict(loss_cls=losses_cls, loss_bbox=[loss / bbox_avg_factor for loss in losses_bbox],
                      loss_centerness=losses_centerness)

        def per_image(levels: list[Tensor]) -> list[Tensor]:  # get_targets splits (image, anchor) by level
            return [torch.cat([level[i] for level in levels]) for i in range(len(batch_img_metas))]

        return losses, AuxPositives(per_image(anchors), per_image(labels), per_image(bbox_targets))


@MODELS.register_module()
class CoStandardRoIHead(StandardRoIHead):
    """Box-only ``StandardRoIHead`` whose ``loss_and_positives`` also returns its sampled proposals.

    Use ``reg_decoded_bbox=True`` in the box head (as Co-DETR does, with a GIoU loss): the returned targets
    are the assigned ground-truth boxes either way.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.with_mask:
            raise ValueError("CoStandardRoIHead is box-only (Co-DETR's auxiliary head); remove `mask_head`.")

    def loss_and_positives(self, x: tuple[Tensor, ...], rpn_results_list: list[InstanceData],
                           batch_data_samples: SampleList) -> tuple[dict[str, Tensor], AuxPositives]:
        """``StandardRoIHead.loss`` and the proposals it sampled with their assignment, per image."""
        if len(rpn_results_list) != len(batch_data_samples):
            raise ValueError(f"{len(rpn_results_list)} proposal sets for {len(batch_data_samples)} images.")
        batch_gt_instances, batch_gt_instances_ignore, _ = unpack_gt_instances(batch_data_samples)
        sampling_results = []
        for i, (proposals, gt_instances, gt_ignore) in enumerate(
                zip(rpn_results_list, batch_gt_instances, batch_gt_instances_ignore)):
            proposals.priors = proposals.pop("bboxes")
            assign_result = self.bbox_assigner.assign(proposals, gt_instances, gt_ignore)
            sampling_results.append(self.bbox_sampler.sample(
                assign_result, proposals, gt_instances, feats=[level[i][None] for level in x]))
        losses = self.bbox_loss(x, sampling_results)["loss_bbox"]

        num_classes = self.bbox_head.num_classes
        labels, targets = [], []
        for result in sampling_results:  # result.priors = positives, then negatives
            num_neg = len(result.neg_priors)
            pos_targets = get_box_tensor(result.pos_gt_bboxes)
            labels.append(torch.cat([result.pos_gt_labels, result.pos_gt_labels.new_full((num_neg,), num_classes)]))
            targets.append(torch.cat([pos_targets, pos_targets.new_zeros((num_neg, 4))]))
        priors = [get_box_tensor(result.priors) for result in sampling_results]
        return losses, AuxPositives(priors, labels, targets)
