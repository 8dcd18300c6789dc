"""The protocol every adapter method implements (peft's ``BaseTunerLayer`` split, in pure PyTorch).

Two kinds of adapter parts exist:

* :class:`AdapterLayer` wraps one pretrained layer (``base_layer``) and changes its weight by a trainable
  ``delta_weight()`` (SoMA, PiSSA, LoRA, DoRA). It can be merged into the base weight for inference.
* :class:`AdapterModule` is a module a method adds next to the pretrained ones (Rein's tokens): it is trained
  and saved like an adapter, but it has no weight to fold into, so merging leaves it in place.

The model-level functions (finding, merging, saving adapters) only use these classes, never a method's name.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ["AdapterLayer", "AdapterModule"]


class AdapterLayer(nn.Module):
    """An adapted layer: ``base_layer`` (frozen, possibly holding a residual) plus trainable adapter tensors."""

    base_layer: nn.Module

    @property
    def merged(self) -> bool:
        """Whether the adapter is currently folded into ``base_layer``'s weight."""
        raise NotImplementedError

    def initialize(self, generator: torch.Generator | None = None) -> None:
        """Take the method's initialisation from the current (pretrained) base weight."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The change the adapter makes to the base layer's current weight, as a dense matrix."""
        raise NotImplementedError

    def merge(self, safe_merge: bool = False) -> None:
        """Fold the adapter into the base weight (idempotent)."""
        raise NotImplementedError

    def unmerge(self) -> None:
        """Undo :meth:`merge` (idempotent)."""
        raise NotImplementedError

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors training changes, by name relative to this layer (``"lora_A"``, ``"base_layer.bias"``)."""
        raise NotImplementedError

    def layer_info(self) -> dict[str, Any]:
        """Plain-data facts an adapter file must agree on (shapes, rank, ...) to be loaded into this layer."""
        raise NotImplementedError


class AdapterModule(nn.Module):
    """A trainable module an adapter method adds to the model; it has no base weight to merge into."""

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """All of the module's parameters, by name relative to the module."""
        return dict(self.named_parameters())

    def layer_info(self) -> dict[str, Any]:
        """Parameter shapes, checked when an adapter file is loaded."""
        return {name: list(param.shape) for name, param in self.named_parameters()}


class BlockRefiner(AdapterModule):
    """An adapter module that refines a ViT's token sequence after some of its blocks (Rein).

    The backbone finds refiners by type among the ViT's modules and, after running block ``i`` for each ``i`` in
    :attr:`refined_blocks`, replaces the tokens by ``refine(tokens, i, ...)``. A refiner may also give a query
    decoder (Mask2Former) its object queries: then :attr:`decoder_query_shape` is not ``None`` and
    :meth:`decoder_queries` returns them.
    """

    @property
    def refined_blocks(self) -> tuple[int, ...]:
        """Indices of the blocks whose output this module refines."""
        raise NotImplementedError

    def refine(self, tokens: torch.Tensor, block_index: int, num_prefix_tokens: int,
               grid_size: tuple[int, int]) -> torch.Tensor:
        """The refined output of block ``block_index``.

        Args:
            tokens: ``(B, num_prefix_tokens + H*W, C)``: class/register tokens first, then the patch tokens in
                row-major order of the ``grid_size = (H, W)`` patch grid.
        """
        raise NotImplementedError

    @property
    def decoder_query_shape(self) -> tuple[int, int] | None:
        """``(num_queries, channels)`` of :meth:`decoder_queries`, or ``None`` if this module gives no queries."""
        return None

    def decoder_queries(self) -> torch.Tensor:
        """Object queries ``(num_queries, channels)`` for a query decoder, shared by all images of a batch."""
        raise NotImplementedError(f"{type(self).__name__} gives no decoder queries.")


__all__.append("BlockRefiner")
