"""mmseg's ``EncoderDecoder`` with slide inference that works for Mask2Former, checked training labels, and Rein's
link from backbone tokens to decoder queries."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from soma.peft.base import BlockRefiner
from soma.utils import ConfigError


@MODELS.register_module()
class SoMAEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose per-window metadata matches the window, and which refuses unconverted labels.

    mmseg's slide inference rewrites ``img_shape`` for each crop but leaves ``pad_shape`` at the full image's
    padded size; ``Mask2FormerHead`` resizes its masks to ``pad_shape``, so the window logits come back at the
    wrong size. Here ``pad_shape`` always describes the tensor actually being decoded, which is padded to a
    multiple of the ViT's patch size when a window is smaller than the crop.

    Training labels must be trainIds (``0 .. num_classes-1``) or the ignore index: a raw label id (e.g. 26 for
    a Cityscapes car) would otherwise fail deep inside the loss, or worse, train a wrong class. Such a batch
    is refused with the label file named.

    Query link (Rein, arXiv:2312.04265): when a block refiner of the backbone gives decoder queries, the decode
    head receives ``(features, queries)`` instead of the features; it must be a head that takes them
    (``takes_linked_queries``, e.g. ``ReinMask2FormerHead``). Every other model decodes the features as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        refiner = self._query_refiner()
        shape = None if refiner is None else refiner.decoder_query_shape
        if getattr(self.decode_head, "takes_linked_queries", False):
            self.decode_head.check_linked_queries(shape)
        elif shape is not None:
            raise ConfigError(f"the backbone's {type(refiner).__name__} gives decoder queries (link_queries=True) "
                              f"but the decode head {type(self.decode_head).__name__} does not take them: use "
                              "decode_head=dict(type='ReinMask2FormerHead'), or set link_queries=False.")

    def _query_refiner(self) -> BlockRefiner | None:
        """The backbone's block refiner that gives decoder queries, if any (found by type)."""
        found = [m for m in self.backbone.modules() if isinstance(m, BlockRefiner) and m.decoder_query_shape]
        if len(found) > 1:
            raise ConfigError(f"the backbone has {len(found)} modules that give decoder queries; a head takes one.")
        return found[0] if found else None

    def extract_feat(self, inputs: torch.Tensor) -> Any:
        """The backbone's (and neck's) features, paired with the decoder queries when the backbone links them."""
        features = super().extract_feat(inputs)
        refiner = self._query_refiner()
        return features if refiner is None else (features, refiner.decoder_queries())

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        head = self.decode_head
        for sample in data_samples:
            labels = sample.gt_sem_seg.data
            bad = labels[(labels >= head.num_classes) & (labels != head.ignore_index)]
            if bad.numel():
                ids = sorted(bad.unique().tolist())[:8]
                raise ValueError(f"label map '{sample.metainfo.get('seg_map_path', '?')}' holds ids {ids} outside "
                                 f"the {head.num_classes} classes (0-{head.num_classes - 1}, ignore "
                                 f"{head.ignore_index}); convert the labels to trainIds with tools/convert_datasets/.")
        return super().loss(inputs, data_samples)

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        # A window (or whole image) smaller than the crop keeps its own size, e.g. BDD at TTA scale 0.5 is
        # 640x360: pad it to a multiple of the ViT's patch and crop the logits back.
        height, width = inputs.shape[2:]
        patch_h, patch_w = self._patch_size()
        pad_h, pad_w = -height % patch_h, -width % patch_w
        if pad_h or pad_w:
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h))
        for meta in batch_img_metas:
            if "pad_shape" in meta:
                meta["pad_shape"] = tuple(inputs.shape[2:])
        return super().encode_decode(inputs, batch_img_metas)[..., :height, :width]

    def _patch_size(self) -> tuple[int, int]:
        patch_embed = getattr(getattr(self.backbone, "vit", None), "patch_embed", None)
        size = getattr(patch_embed, "patch_size", (1, 1))
        return (size, size) if isinstance(size, int) else tuple(size)
