"""Mask2Former whose object queries come from the backbone's Rein tokens (arXiv:2312.04265, "linking tokens to
instances")."""
from __future__ import annotations

import torch
import torch.nn as nn
from mmseg.models.decode_heads import Mask2FormerHead
from mmseg.registry import MODELS

from soma.utils import ConfigError


class _QueriesOfThisForward(nn.Module):
    """Stands in for the ``nn.Embedding`` of learned queries: ``weight`` holds this forward pass's queries.

    mmdet's ``Mask2FormerHead.forward`` reads ``query_feat.weight`` and ``query_embed.weight``
    (``num_queries × C``) and repeats them over the batch; handing it the linked queries this way reuses its
    decoder loop unchanged. ``weight`` is ``None`` outside a forward pass (no graph is kept on the module).
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight: torch.Tensor | None = None


@MODELS.register_module()
class ReinMask2FormerHead(Mask2FormerHead):
    """mmseg's ``Mask2FormerHead`` taking its queries from a backbone block refiner (Rein with ``link_queries``).

    The segmentor (``SoMAEncoderDecoder``) passes ``(features, queries)`` instead of the features: ``queries``
    ``(num_queries, feat_channels)`` replace the learned query positional embeddings, and (with
    ``replace_query_feat``) a ``Linear`` of them replaces the learned initial query features, as released.

    Args:
        replace_query_feat: derive the initial query features from the linked queries (``queries_to_feat``);
            ``False`` keeps mmdet's learned ``query_feat``.
        **kwargs: ``Mask2FormerHead`` arguments; ``num_queries`` must equal Rein's ``num_tokens`` and
            ``feat_channels`` its ``query_dim``.
    """

    takes_linked_queries = True  # what SoMAEncoderDecoder checks before passing (features, queries)

    def __init__(self, replace_query_feat: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.replace_query_feat = replace_query_feat
        self.feat_channels = feat_channels = self.query_embed.embedding_dim
        self.query_embed = _QueriesOfThisForward()
        if replace_query_feat:
            self.query_feat = _QueriesOfThisForward()
            self.queries_to_feat = nn.Linear(feat_channels, feat_channels)

    def check_linked_queries(self, shape: tuple[int, int] | None) -> None:
        """Refuse a backbone whose queries (``(num_queries, channels)`` or ``None``) do not fit this head."""
        if shape is None:
            raise ConfigError("ReinMask2FormerHead takes its queries from Rein's tokens, but the backbone gives "
                              "none: use backbone peft=dict(type='Rein', link_queries=True), or "
                              "type='Mask2FormerHead'.")
        expected = (self.num_queries, self.feat_channels)
        if tuple(shape) != expected:
            raise ConfigError(f"the backbone gives {shape[0]} queries of width {shape[1]}, but the head has "
                              f"num_queries={expected[0]} and feat_channels={expected[1]}; set Rein's "
                              "`num_tokens`/`query_dim` to match.")

    def forward(self, x: tuple, batch_data_samples: list) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Mask2Former's forward on ``x = (multi-level features, queries)``."""
        if not (isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], torch.Tensor) and x[1].dim() == 2):
            raise ConfigError("ReinMask2FormerHead needs the segmentor to pass (features, queries): use "
                              "model type='SoMAEncoderDecoder' with a Rein backbone (link_queries=True).")
        features, queries = x
        self.query_embed.weight = queries
        if self.replace_query_feat:
            self.query_feat.weight = self.queries_to_feat(queries)
        try:
            return super().forward(features, batch_data_samples)
        finally:
            self.query_embed.weight = None
            if self.replace_query_feat:
                self.query_feat.weight = None
