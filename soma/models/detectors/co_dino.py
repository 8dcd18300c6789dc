"""Co-DINO: DINO trained with Co-DETR's collaborative hybrid assignments (Zong et al., ICCV 2023).

Co-DETR (arXiv:2211.12860) keeps a DETR detector's one-to-one matching and adds, for training only,
auxiliary heads with one-to-many assignments (an RPN + Faster R-CNN RoI head, an ATSS head) on the
encoder's output, and feeds the boxes those heads assign to objects back to the decoder as extra positive
query groups ("customised positive queries"). At test time the detector is plain DINO (plus soft-NMS in the
Co-DINO recipe). This is the detector of SoMA's published DWD numbers.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
from mmdet.models.detectors import DINO
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.config import ConfigDict
from mmengine.model import ModuleList
from torch import Tensor, nn

from .co_aux_heads import AuxPositives

_DECODER_KEYS = ("memory", "memory_mask", "spatial_shapes", "level_start_index", "valid_ratios")


@MODELS.register_module()
class CoDINO(DINO):
    """DINO with Co-DETR's auxiliary heads and positive query groups (training) and NMS (test).

    Training, per batch:

    1. DINO: backbone → neck (``num_feature_levels`` maps) → deformable encoder → memory; the decoder runs the
       matching and denoising queries; ``bbox_head`` (a :class:`CoDINOHead`) gives DINO's losses.
    2. Auxiliary heads: the memory, reshaped back into its ``num_feature_levels`` maps plus one stride-2
       downsampled map (3x3 conv + GroupNorm), is the input of ``rpn_head`` → ``roi_head`` (a
       :class:`CoStandardRoIHead`) and of each one-stage head in ``aux_heads`` (a :class:`CoATSSHead`). Each
       trains one-to-many with its own assigner; its loss weights are set in its own config.
    3. Positive query groups: each auxiliary head's assignment becomes one group of decoder queries, in order
       RoI head, then ``aux_heads``: per image up to ``max_positive_queries`` of its positives (a random
       subset beyond that), padded with its negatives to the batch's largest count (at least
       ``min_positive_queries``). A query's reference box is its prior; its content is a per-group
       linear + LayerNorm of the box's sine embedding. The decoder runs once per group on the same memory and
       ``bbox_head.loss_positive_queries`` scores every layer against the head's targets.

    Test: DINO's prediction (matching queries only), then ``bbox_head.test_cfg.nms``; auxiliary heads are unused.

    Loss names: DINO's (``loss_cls``, ``d0.loss_cls``, ``enc_loss_cls``, ``dn_loss_cls``, ...), the RPN's
    (``loss_rpn_cls``, ``loss_rpn_bbox``), ``roi.*`` and ``<head>.*`` (e.g. ``atss.loss_centerness``) for the
    auxiliary heads, and ``pos_roi.*`` / ``pos_<head>.*`` for their query groups.

    Args:
        rpn_head: RPN config (class-agnostic proposals for ``roi_head``); its ``train_cfg``/``test_cfg`` inside.
        roi_head: ``CoStandardRoIHead`` config (needs ``rpn_head``); ``train_cfg``/``test_cfg`` inside.
        aux_heads: one-stage auxiliary head configs with a ``loss_and_positives`` method (``CoATSSHead``).
        rpn_proposal: proposal settings while training (``nms_pre``, ``max_per_img``, ``nms``,
            ``min_bbox_size``); default: the RPN's ``test_cfg``.
        with_positive_queries: feed the auxiliary positives back to the decoder (Co-DETR); ``False`` keeps
            only the auxiliary heads' losses.
        max_positive_queries: at most this many positive queries per image and group (Co-DETR: 300).
        min_positive_queries: smallest group size (Co-DETR: 9).
        *args, **kwargs: :class:`mmdet.models.DINO`'s.

    Raises:
        ValueError: the neck, the encoder/decoder attention and the auxiliary heads disagree on the number of
            feature levels, a ``roi_head`` has no ``rpn_head``, or an auxiliary head has another class count.
    """

    def __init__(self, *args, rpn_head: dict | None = None, roi_head: dict | None = None,
                 aux_heads: Sequence[dict] = (), rpn_proposal: dict | None = None,
                 with_positive_queries: bool = True, max_positive_queries: int = 300, min_positive_queries: int = 9,
                 **kwargs) -> None:
        check_feature_levels(kwargs)
        super().__init__(*args, **kwargs)
        if roi_head is not None and rpn_head is None:
            raise ValueError("CoDINO: `roi_head` scores RPN proposals, so it needs an `rpn_head`.")
        if not 1 <= min_positive_queries <= max_positive_queries:
            raise ValueError(f"CoDINO: need 1 <= min_positive_queries ({min_positive_queries}) <= "
                             f"max_positive_queries ({max_positive_queries}).")
        self.with_positive_queries = with_positive_queries
        self.max_positive_queries = max_positive_queries
        self.min_positive_queries = min_positive_queries
        self.num_aux_levels = self.num_feature_levels + 1
        dims = self.embed_dims

        self.rpn_head = MODELS.build(rpn_head) if rpn_head is not None else None
        rpn_proposal = rpn_proposal if rpn_proposal is not None else (rpn_head or {}).get("test_cfg")
        self.rpn_proposal = ConfigDict(rpn_proposal) if rpn_proposal is not None else None
        self.roi_head = MODELS.build(roi_head) if roi_head is not None else None
        self.aux_heads = ModuleList(MODELS.build(cfg) for cfg in aux_heads)  # mmengine's: runs their init_cfg
        self.aux_head_names = _head_names(self.aux_heads)
        self.group_names = (["roi"] if self.roi_head is not None else []) + self.aux_head_names
        self._check_aux_heads()
        if self.group_names or self.rpn_head is not None:
            self.aux_downsample = nn.Sequential(nn.Conv2d(dims, dims, 3, stride=2, padding=1), nn.GroupNorm(32, dims))
        if with_positive_queries:  # sine embedding of (cx, cy, w, h): 4 x dims/2 features
            self.positive_query_embeds = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * dims, dims), nn.LayerNorm(dims)) for _ in self.group_names)

    def _check_aux_heads(self) -> None:
        num_classes = self.bbox_head.num_classes
        heads = {"rpn_head": self.rpn_head, **dict(zip(self.aux_head_names, self.aux_heads))}
        for name, head in heads.items():
            if head is None:
                continue
            levels = head.prior_generator.num_levels
            if levels != self.num_aux_levels:
                raise ValueError(
                    f"CoDINO: the auxiliary head `{name}` has anchors for {levels} feature levels, but its input has "
                    f"{self.num_aux_levels} (the encoder's num_feature_levels={self.num_feature_levels} maps plus "
                    f"one downsampled map): give its anchor generator {self.num_aux_levels} strides.")
            if name != "rpn_head" and head.num_classes != num_classes:
                raise ValueError(f"CoDINO: `{name}` has {head.num_classes} classes, the query head {num_classes}.")
            if name != "rpn_head" and not hasattr(head, "loss_and_positives"):
                raise ValueError(f"CoDINO: `{name}` ({type(head).__name__}) has no `loss_and_positives`; "
                                 "use a Co-DETR auxiliary head such as CoATSSHead.")
        if self.roi_head is not None:
            inputs = self.roi_head.bbox_roi_extractor.num_inputs
            if inputs > self.num_aux_levels:
                raise ValueError(f"CoDINO: the RoI extractor reads {inputs} feature levels, the auxiliary input has "
                                 f"{self.num_aux_levels}: shorten its `featmap_strides`.")
            if self.roi_head.bbox_head.num_classes != num_classes:
                raise ValueError(f"CoDINO: `roi_head` has {self.roi_head.bbox_head.num_classes} classes, the query "
                                 f"head {num_classes}.")

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict[str, Tensor]:
        """DINO's losses, the auxiliary heads' losses and the losses of their positive query groups."""
        img_feats = self.extract_feat(batch_inputs)
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        query_inputs, head_inputs = self.pre_decoder(**encoder_outputs, batch_data_samples=batch_data_samples)
        decoder_inputs.update(query_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        losses = self.bbox_head.loss(**head_inputs, batch_data_samples=batch_data_samples)
        if not hasattr(self, "aux_downsample"):
            return losses

        aux_feats = self.aux_feature_maps(encoder_outputs["memory"], encoder_outputs["spatial_shapes"])
        self._check_aux_strides(aux_feats, batch_inputs.shape[-2:])
        assignments: dict[str, AuxPositives] = {}
        if self.rpn_head is not None:
            rpn_samples = copy.deepcopy(batch_data_samples)
            for sample in rpn_samples:  # the RPN proposes objects of any class
                sample.gt_instances.labels = torch.zeros_like(sample.gt_instances.labels)
            rpn_losses, proposals = self.rpn_head.loss_and_predict(aux_feats, rpn_samples,
                                                                   proposal_cfg=self.rpn_proposal)
            losses.update(rpn_losses)
            if self.roi_head is not None:
                roi_losses, assignments["roi"] = self.roi_head.loss_and_positives(aux_feats, proposals,
                                                                                  batch_data_samples)
                losses.update(_prefixed("roi", roi_losses))
        for name, head in zip(self.aux_head_names, self.aux_heads):
            head_losses, assignments[name] = head.loss_and_positives(aux_feats, batch_data_samples)
            losses.update(_prefixed(name, head_losses))

        if self.with_positive_queries:
            batch_img_metas = [sample.metainfo for sample in batch_data_samples]
            decoder_context = {key: decoder_inputs[key] for key in _DECODER_KEYS}
            for index, name in enumerate(self.group_names):
                group_losses = self.loss_positive_queries(index, assignments[name], decoder_context, batch_img_metas)
                losses.update(_prefixed(f"pos_{name}", group_losses))
        return losses

    def aux_feature_maps(self, memory: Tensor, spatial_shapes: Tensor) -> tuple[Tensor, ...]:
        """The encoder's memory (bs, tokens, dims) as its level maps plus one downsampled map (bs, dims, h, w)."""
        maps = []
        for tokens, (h, w) in zip(memory.split(spatial_shapes.prod(1).tolist(), dim=1), spatial_shapes.tolist()):
            maps.append(tokens.transpose(1, 2).reshape(memory.shape[0], memory.shape[2], h, w))
        maps.append(self.aux_downsample(maps[-1]))
        return tuple(maps)

    def _check_aux_strides(self, aux_feats: Sequence[Tensor], input_shape: Sequence[int]) -> None:
        """Anchors placed at the wrong stride train silently wrong: compare map sizes with the anchor strides."""
        heads = {"rpn_head": self.rpn_head, **dict(zip(self.aux_head_names, self.aux_heads))}
        for name, head in heads.items():
            if head is None:
                continue
            for level, (feat, stride) in enumerate(zip(aux_feats, head.prior_generator.strides)):
                expected = [math.ceil(size / s) for size, s in zip(input_shape, stride[::-1])]
                if any(abs(got - want) > 1 for got, want in zip(feat.shape[-2:], expected)):
                    raise ValueError(
                        f"CoDINO: auxiliary level {level} is {tuple(feat.shape[-2:])} for a {tuple(input_shape)} "
                        f"input, but `{name}` places its anchors at stride {stride[0]} (about {tuple(expected)}). "
                        "The anchor strides must be the feature strides (backbone pyramid, neck extra level, "
                        "then x2).")

    def positive_query_group(self, positives: AuxPositives, batch_img_metas: list[dict]) -> dict[str, Tensor]:
        """One auxiliary head's positives as a query group, normalised to each image's ``img_shape``.

        Returns (bs = images, n = group size): ``reference_points`` (bs, n, 4) (cx, cy, w, h) in [0, 1],
        ``labels`` (bs, n), ``label_weights`` (bs, n) (0 only for padding beyond the head's negatives),
        ``bbox_targets`` (bs, n, 4), ``bbox_weights`` (bs, n, 4) (1 for the positives) and ``num_positives`` (bs,).
        """
        num_classes = self.bbox_head.num_classes
        size = min(max(positives.num_positives(num_classes)), self.max_positive_queries)
        size = max(size, self.min_positive_queries)
        fields: dict[str, list[Tensor]] = {key: [] for key in ("reference_points", "labels", "label_weights",
                                                                "bbox_targets", "bbox_weights", "num_positives")}
        for priors, labels, targets, meta in zip(positives.priors, positives.labels, positives.targets,
                                                 batch_img_metas):
            pos = (labels < num_classes).nonzero().squeeze(1)
            neg = (labels == num_classes).nonzero().squeeze(1)
            if len(pos) > size:
                pos = pos[torch.randperm(len(pos), device=pos.device)[:size]]
            neg = neg[torch.randperm(len(neg), device=neg.device)[:size - len(pos)]]
            keep = torch.cat([pos, neg])
            padding = size - len(keep)
            h, w = meta["img_shape"][:2]
            scale = priors.new_tensor([w, h, w, h])
            boxes = bbox_xyxy_to_cxcywh(priors[keep].float() / scale).clamp(0, 1)
            fields["reference_points"].append(torch.cat([boxes, boxes.new_tensor([[0.5, 0.5, 1.0, 1.0]] * padding)]))
            fields["labels"].append(torch.cat([labels[keep], labels.new_full((padding,), num_classes)]))
            fields["label_weights"].append(torch.cat([boxes.new_ones(len(keep)), boxes.new_zeros(padding)]))
            box_targets = torch.zeros_like(boxes)
            box_targets[:len(pos)] = bbox_xyxy_to_cxcywh(targets[pos].float() / scale)
            fields["bbox_targets"].append(torch.cat([box_targets, boxes.new_zeros((padding, 4))]))
            box_weights = boxes.new_zeros((size, 4))
            box_weights[:len(pos)] = 1
            fields["bbox_weights"].append(box_weights)
            fields["num_positives"].append(torch.tensor(len(pos), device=boxes.device))
        return {key: torch.stack(values) for key, values in fields.items()}

    def loss_positive_queries(self, group_index: int, positives: AuxPositives, decoder_context: Mapping[str, Tensor],
                              batch_img_metas: list[dict]) -> dict[str, Tensor]:
        """Run the decoder on one positive query group and score it against the auxiliary head's targets."""
        group = self.positive_query_group(positives, batch_img_metas)
        reference_points = group["reference_points"]
        sine = self.get_proposal_pos_embed(inverse_sigmoid(reference_points), num_pos_feats=self.embed_dims // 2)
        query = self.positive_query_embeds[group_index](sine)
        decoded = self.forward_decoder(query=query, reference_points=reference_points, dn_mask=None,
                                       **decoder_context)
        return self.bbox_head.loss_positive_queries(
            decoded["hidden_states"], decoded["references"], group["labels"], group["label_weights"],
            group["bbox_targets"], group["bbox_weights"], batch_img_metas)


def check_feature_levels(detector_cfg: Mapping) -> None:
    """The neck's outputs and the encoder/decoder attention must cover ``num_feature_levels`` levels."""
    levels = detector_cfg.get("num_feature_levels", 4)
    neck = detector_cfg.get("neck") or {}
    if "in_channels" in neck:
        outs = neck.get("num_outs") or len(neck["in_channels"])
        if outs != levels:
            raise ValueError(f"CoDINO: the neck gives {outs} feature maps (num_outs) but num_feature_levels={levels}.")
    for part, attention in (("encoder", "self_attn_cfg"), ("decoder", "cross_attn_cfg")):
        attn = ((detector_cfg.get(part) or {}).get("layer_cfg") or {}).get(attention) or {}
        if attn.get("num_levels", 4) != levels:
            raise ValueError(f"CoDINO: {part}.layer_cfg.{attention}.num_levels={attn.get('num_levels', 4)} but "
                             f"num_feature_levels={levels}; set both to the neck's number of outputs.")


def _head_names(heads: Sequence[nn.Module]) -> list[str]:
    """``CoATSSHead`` -> ``atss``; a number is appended when a name repeats."""
    names = [type(head).__name__.removeprefix("Co").removesuffix("Head").lower() for head in heads]
    return [f"{name}{i}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _prefixed(prefix: str, losses: Mapping[str, object]) -> dict[str, object]:
    return {f"{prefix}.{key}": value for key, value in losses.items()}
