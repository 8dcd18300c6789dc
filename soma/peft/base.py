"""The protocol every adapter method implements (peft's ``BaseTunerLayer`` split, in pure PyTorch).

Two kinds of adapter parts exist:

* :class:`AdapterLayer` wraps one pretrained layer (``base_layer``) and changes its weight by a trainable
  ``delta_weight()`` (SoMA, PiSSA, LoRA, DoRA). It can be merged into the base weight for inference.
* :class:`AdapterModule` is a module a method adds next to the pretrained ones (Rein's tokens): it is trained
  and saved like an adapter, but it has no weight to fold into, so merging leaves it in place.

The model-level functions (finding, merging, saving adapters) only use these classes, never a method's name.
Layers of other libraries (HF peft's tuner layers) take part through a *view*: an :class:`AdapterLayer` that
reads and drives the foreign layer without being part of the model (:func:`register_adapter_layer_view`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

__all__ = ["AdapterLayer", "AdapterModule", "OptionChange", "register_adapter_layer_view", "as_adapter_layer",
           "adapter_tensor_names", "layer_tensor_names", "module_tensor_names"]


class AdapterLayer(nn.Module):
    """An adapted layer: ``base_layer`` (frozen, possibly holding a residual) plus trainable adapter tensors.

    Subclasses set :attr:`method_name` and :attr:`adapter_tensor_names` and implement the methods that raise
    ``NotImplementedError``. The wrapped layer lives at :attr:`base_layer_name` (``"base_layer"``), so its
    pretrained weights load under ``<layer>.base_layer.<weight>``.
    """

    method_name: ClassVar[str] = "adapter"  # names the method in messages ("SoMA", "DoRA")
    # Names of the adapter tensors in state-dict keys (``<layer>.lora_A``): how a checkpoint's adapter keys are told
    # apart from base weights without building the model (see :func:`soma.peft.is_adapter_key`).
    adapter_tensor_names: ClassVar[tuple[str, ...]] = ()
    base_layer_name: ClassVar[str] = "base_layer"
    base_layer: nn.Module

    @property
    def merged(self) -> bool:
        """Whether the adapter is currently folded into ``base_layer``'s weight."""
        raise NotImplementedError

    @property
    def adapted_matrices(self) -> int:
        """How many weight matrices the layer adapts (a fused q/k/v layer adapted slice by slice counts 3)."""
        return 1

    @property
    def layer_type(self) -> str:
        """The adapted layer's kind, stored in adapter files and checked when they are loaded."""
        return type(self).__name__

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

    @torch.no_grad()
    def frozen_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The frozen base weight the adapter sits on, the same whether merged or not (in ``dtype``).

        The default suits additive adapters (merged weight = base + ``delta_weight()``); the difference is
        taken in float64, so that low-precision models lose as little as possible.
        """
        weight = self.base_layer.weight.detach()
        if self.merged:
            weight = weight.to(torch.float64) - self.delta_weight().to(torch.float64)
        return weight.to(dtype or self.base_layer.weight.dtype)

    def unwrapped(self) -> nn.Module:
        """The module that replaces this layer in the model when the adapters are unloaded."""
        return self.base_layer


@dataclass(frozen=True)
class OptionChange:
    """A method option whose value explains why saved adapter tensors do not fit a model.

    Attributes:
        options: the option's name(s) in the method's config (``("num_tokens",)``; two when the shapes cannot tell
            them apart: ``("start_block", "end_block")``).
        saved: the value the saved tensors were made with (or a description, e.g. ``"4 blocks"``).
        current: the value of the model's own config (or a description).
    """

    options: tuple[str, ...]
    saved: Any
    current: Any


class AdapterModule(nn.Module):
    """A trainable module an adapter method adds to the model; it has no base weight to merge into."""

    method_name: ClassVar[str] = "adapter"
    # Names of parameters held directly by the module that mark a checkpoint's module as this class's when no model
    # is at hand: a key ``<module>.<name>`` ending in one of them claims every key under ``<module>.`` (see
    # soma.peft.model.state_adapter_keys).
    adapter_tensor_names: ClassVar[tuple[str, ...]] = ()

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """All of the module's parameters, by name relative to the module."""
        return dict(self.named_parameters())

    def layer_info(self) -> dict[str, Any]:
        """Parameter shapes, checked when an adapter file is loaded."""
        return {name: list(param.shape) for name, param in self.named_parameters()}

    def option_changes(self, saved_shapes: Mapping[str, Sequence[int]]) -> list[OptionChange]:
        """The options of this module's config that would explain ``saved_shapes`` (the shapes of a saved module's
        tensors, by name relative to the module) differing from this module's own; empty if none can be told."""
        return []


# A view: (is_foreign_layer(module), make_view(module) -> AdapterLayer, adapter tensor names()).
_LAYER_VIEWS: list[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], AdapterLayer],
                         Callable[[], tuple[str, ...]]]] = []


def register_adapter_layer_view(matches: Callable[[nn.Module], bool], make_view: Callable[[nn.Module], AdapterLayer],
                                tensor_names: Callable[[], tuple[str, ...]] = tuple) -> None:
    """Let the model-level functions treat foreign adapted layers (``matches(module)``) as :class:`AdapterLayer`.

    Args:
        matches: whether a module is such a layer; called on every module of a model, so it must be cheap.
        make_view: the :class:`AdapterLayer` that reads and drives the foreign layer (not part of the model).
        tensor_names: the foreign layers' adapter tensor names, as they appear in state-dict keys.
    """
    _LAYER_VIEWS.append((matches, make_view, tensor_names))


def as_adapter_layer(module: nn.Module) -> AdapterLayer | None:
    """``module`` itself if it is an :class:`AdapterLayer`, its registered view if it has one, else ``None``."""
    if isinstance(module, AdapterLayer):
        return module
    for matches, make_view, _ in _LAYER_VIEWS:
        if matches(module):
            return make_view(module)
    return None


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def layer_tensor_names() -> frozenset[str]:
    """The adapter tensor names of every known adapter layer class (imported subclasses and registered views)."""
    names = {name for cls in _subclasses(AdapterLayer) for name in cls.adapter_tensor_names}
    for _, _, tensor_names in _LAYER_VIEWS:
        names.update(tensor_names())
    return frozenset(names)


def module_tensor_names() -> frozenset[str]:
    """The parameter names that mark an adapter module of a known class (imported subclasses)."""
    return frozenset(name for cls in _subclasses(AdapterModule) for name in cls.adapter_tensor_names)


def adapter_tensor_names() -> frozenset[str]:
    """The adapter tensor names of every known adapter class: :func:`layer_tensor_names` and
    :func:`module_tensor_names`."""
    return layer_tensor_names() | module_tensor_names()


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
