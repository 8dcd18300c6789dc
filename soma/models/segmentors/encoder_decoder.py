"""mmseg's ``EncoderDecoder`` with slide inference that works for Mask2Former."""
from __future__ import annotations

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS


@MODELS.register_module()
class SoMAEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose per-window metadata matches the window.

    mmseg's slide inference rewrites ``img_shape`` for each crop but leaves ``pad_shape`` at the full image's
    padded size; ``Mask2FormerHead`` resizes its masks to ``pad_shape``, so the window logits come back at the
    wrong size. Here ``pad_shape`` always describes the tensor actually being decoded.
    """

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        for meta in batch_img_metas:
            if "pad_shape" in meta:
                meta["pad_shape"] = tuple(inputs.shape[2:])
        return super().encode_decode(inputs, batch_img_metas)
