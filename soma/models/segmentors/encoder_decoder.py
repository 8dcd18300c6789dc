"""mmseg's ``EncoderDecoder`` with slide inference that works for Mask2Former and checked training labels."""
from __future__ import annotations

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS


@MODELS.register_module()
class SoMAEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose per-window metadata matches the window, and which refuses unconverted labels.

    mmseg's slide inference rewrites ``img_shape`` for each crop but leaves ``pad_shape`` at the full image's
    padded size; ``Mask2FormerHead`` resizes its masks to ``pad_shape``, so the window logits come back at the
    wrong size. Here ``pad_shape`` always describes the tensor actually being decoded.

    Training labels must be trainIds (``0 .. num_classes-1``) or the ignore index: a raw label id (e.g. 26 for
    a Cityscapes car) would otherwise fail deep inside the loss, or worse, train a wrong class. Such a batch
    is refused with the label file named.
    """

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
        for meta in batch_img_metas:
            if "pad_shape" in meta:
                meta["pad_shape"] = tuple(inputs.shape[2:])
        return super().encode_decode(inputs, batch_img_metas)
