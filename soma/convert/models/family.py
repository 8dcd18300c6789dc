"""A backbone family as the converters see it: how its checkpoints are recognised, and the arch and options read off
their shapes."""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from soma.models.backbones import FoundationViT

StateDict = dict[str, torch.Tensor]
_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class Option:
    """A backbone option that changes the timm model and can be read off the weights (e.g. register tokens).

    Args:
        name: the backbone's keyword argument (``--name-with-dashes`` on the command line).
        choices: the allowed values.
        detect: reads the value from a state dict; raises ``ValueError`` for a value outside ``choices``.
        help: command line help.
    """

    name: str
    choices: tuple[int, ...]
    detect: Callable[[Mapping[str, torch.Tensor]], int]
    help: str = ""


@dataclass(frozen=True)
class Family:
    """How to recognise, name and convert the checkpoints of one backbone family.

    Args:
        backbone: the registered backbone; its ``arch_zoo`` gives the archs and their timm models.
        checkpoint_filter: the family's conversion (:mod:`soma.models.backbones.checkpoint_filters`):
            official/transformers → timm keys.
        native_patch: the patch size of the released kernels.
        native_img_size: the pretraining image size, used when the file has no position embedding to read it from.
        signatures: key sets of the known layouts; a file is of the family if it has every key of one of them.
        official_markers: keys only the official (non-timm) layout has; used to name the detected layout.
        layouts: the accepted layouts in words, for error messages.
        transformers_layouts: the transformers model classes whose checkpoints the family reads.
        options: backbone options read off the weights (see :class:`Option`).
        patch_resampling: the converter offers ``--patch-resample`` (families released at patch 14).
        arch_filter: narrows the archs whose width and depth match ``(state, archs)`` → archs, for archs that
            differ in another way (DINOv3 S vs S+: a GELU or a SwiGLU MLP). Default: keeps them all.
    """

    backbone: type[FoundationViT]
    checkpoint_filter: Callable[[StateDict, torch.nn.Module], StateDict]
    native_patch: int
    native_img_size: int
    signatures: tuple[frozenset[str], ...]
    official_markers: tuple[str, ...]
    layouts: str
    transformers_layouts: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    patch_resampling: bool = False
    arch_filter: Callable[[Mapping[str, torch.Tensor], list[str]], list[str]] = field(
        default=lambda state, archs: archs)

    @property
    def name(self) -> str:
        """The family's name (the registered backbone's class name, e.g. ``"DINOv2"``)."""
        return self.backbone.__name__


def detect_layout(family: Family, state: Mapping[str, torch.Tensor]) -> str:
    """``"official"`` or ``"timm"``: which of the family's key layouts ``state`` has.

    Raises:
        ValueError: ``state`` has none of the family's layouts (e.g. a ResNet or Swin checkpoint).
    """
    keys = set(state)
    if not any(signature <= keys for signature in family.signatures):
        expected = " or ".join(str(sorted(signature)) for signature in family.signatures)
        article = "an" if family.name[0] in "AEIOU" else "a"
        raise ValueError(f"not {article} {family.name} checkpoint: expected keys like {expected} "
                         f"({family.layouts}); found e.g. {sorted(keys)[:6]}.")
    return "official" if any(marker in keys for marker in family.official_markers) else "timm"


@functools.lru_cache(maxsize=None)
def arch_shape(family: Family, arch: str) -> tuple[int, int]:
    """(embedding width, depth) of ``arch``, from its timm model built on the meta device (no memory, no init)."""
    import timm

    timm_name, kwargs, _ = family.backbone.arch_zoo[arch]
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    return model.embed_dim, len(model.blocks)


def infer_arch(family: Family, state: Mapping[str, torch.Tensor], arch: str | None = None) -> str:
    """The arch whose embedding width and depth match the weights; checks a given ``arch`` against them.

    Raises:
        ValueError: no arch has these shapes, or ``arch`` contradicts them.
    """
    width = state["patch_embed.proj.weight"].shape[0]
    depth = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK_INDEX.match(k)))
    matches = [name for name in family.backbone.arch_zoo if arch_shape(family, name) == (width, depth)]
    matches = family.arch_filter(state, matches) if len(matches) > 1 or arch is not None else matches
    if not matches:
        known = {name: arch_shape(family, name) for name in family.backbone.arch_zoo}
        raise ValueError(f"no {family.name} arch has embedding width {width} and depth {depth}; "
                         f"known (width, depth): {known}.")
    if arch is not None and arch not in matches:
        raise ValueError(f"`--arch {arch}` contradicts the weights: embedding width {width} and depth {depth} "
                         f"are {family.name}-{matches[0]}, not {arch} {arch_shape(family, arch)}.")
    return arch or matches[0]


def resolve_options(family: Family, state: Mapping[str, torch.Tensor],
                    given: Mapping[str, int | None]) -> dict[str, int]:
    """The family's options as read off the weights, checked against the values given on the command line.

    Raises:
        ValueError: a given value contradicts the weights.
    """
    options = {}
    for option in family.options:
        found = option.detect(state)
        wanted = given.get(option.name)
        if wanted is not None and wanted != found:
            flag = "--" + option.name.replace("_", "-")
            raise ValueError(f"`{flag} {wanted}` contradicts the weights, which have {option.name}={found}.")
        options[option.name] = found
    return options


def native_img_size(family: Family, state: Mapping[str, torch.Tensor]) -> int:
    """The image size whose patch grid matches the stored position embedding, so that nothing is resampled.

    The embedding holds the grid, plus one class-token position in most layouts (not in timm's register-token
    DINOv2, whose ``pos_embed`` covers the patches only).

    Raises:
        ValueError: the position embedding is not a square grid (with or without a class position).
    """
    pos = state.get("pos_embed")
    if pos is None or pos.dim() != 3:
        return family.native_img_size
    for extra in (1, 0):
        grid = math.isqrt(pos.shape[1] - extra)
        if grid * grid == pos.shape[1] - extra:
            return grid * family.native_patch
    raise ValueError(f"`pos_embed` of shape {tuple(pos.shape)} is not a square patch grid.")
