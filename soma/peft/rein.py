"""Rein: learnable tokens that refine a frozen ViT's features block by block, and give Mask2Former its queries.

Paper: Wei et al., "Stronger, Fewer, & Superior: Harnessing Vision Foundation Models for Domain Generalized
Semantic Segmentation", CVPR 2024, arXiv:2312.04265. Written from the paper; hyper-parameters and the details the
paper leaves open were checked against the official release (github w1oves/Rein).

For each refined block ``i`` with output features ``f`` (the patch tokens, ``n × c``) and ``m`` learnable tokens
``T_i`` (``m × c``), stored low-rank as ``T_i = A_i B_i`` (``A_i``: ``m × r``, ``B_i``: ``r × c``)::

    S   = softmax(f T_iᵀ / √c)                       similarity of each feature to each token (over tokens)
    Δf̄  = S[:, 1:] · MLP_T(T_i[1:])                  token features weighted by similarity; token 0 only takes
                                                     part in the normalisation (a "none of these" token)
    Δf  = MLP_f(Δf̄ + f)
    f'  = f + scale · Δf                             the next block sees f'

``MLP_T`` and ``MLP_f`` (one ``Linear`` each) and the scalar ``scale`` are shared by all blocks, as released
(2.99M trainable parameters for DINOv2-L with m=100, r=16 on all 24 blocks, as the paper reports). Class and
register tokens pass through unchanged.

Linking tokens to instances: the object queries of Mask2Former are derived from the tokens of all refined
blocks. Each token is projected to the decoder width (``Q = W_q T + b``, per block), then pooled across blocks by
max, mean and the last block, and the three are merged by a ``Linear``: ``m`` queries, one per token. The
queries depend only on the tokens, not on the image. :class:`soma.models.ReinMask2FormerHead` uses them as its
query positional embeddings and (through a ``Linear``) as its initial query features.

Initialisation: the tokens are drawn uniformly (Xavier-style bound from the patch size and width, as released),
the MLPs get ``nn.Linear``'s default initialisation and ``scale`` starts at ``scale_init`` (1e-3). The
refinement is therefore *not* the identity at initialisation, only close to it (``scale · MLP_f(…)``);
``identity_init=True`` (the release's zero-MLP variant) zeroes ``MLP_f`` and drops ``scale`` instead, which makes
it exactly the identity.

Example::

    vit = timm.create_model("vit_large_patch14_dinov2", pretrained=True, img_size=512, patch_size=16)
    apply_rein(vit, ReinConfig(num_tokens=100, token_rank=16))
    print(trainable_parameters(vit))  # other trainable: 2,990,081 (only Rein trains)
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from .base import BlockRefiner, OptionChange
from .model import CONFIG_ATTR, check_not_adapted
from .registry import MethodConfig, is_int, register_peft_method

__all__ = ["ReinConfig", "Reins", "apply_rein", "initialize_rein", "rein_modules"]

# The attribute of the ViT that holds the Reins module (its state-dict prefix, e.g. "rein.token_a").
REIN_ATTR = "rein"


@dataclass
class ReinConfig(MethodConfig):
    """Rein's options; the embedding width and patch size are read from the model.

    Args:
        num_tokens: learnable tokens per block (``m``); with ``link_queries`` also Mask2Former's query count.
        token_rank: rank ``r`` of the factorisation ``T = A B`` (the paper's low-rank tokens); ``None`` stores
            full ``m × c`` tokens.
        start_block: first block whose output is refined.
        end_block: refine blocks ``< end_block``; ``None`` means up to the last block.
        link_queries: derive Mask2Former's object queries from the tokens (needs
            ``decode_head=dict(type="ReinMask2FormerHead")``).
        query_dim: width of those queries (the decoder's ``feat_channels``).
        scale_init: initial value of the shared scale of the refinement.
        identity_init: zero ``MLP_f`` and use no scale, so the refined features equal the input at
            initialisation (the release's ``zero_mlp_delta_f`` variant).
    """

    method_name: ClassVar[str] = "Rein"

    num_tokens: int = 100
    token_rank: int | None = 16
    start_block: int = 0
    end_block: int | None = None
    link_queries: bool = True
    query_dim: int = 256
    scale_init: float = 1e-3
    identity_init: bool = False

    def __post_init__(self) -> None:
        # Token 0 only normalises the similarity, so at least one more token must carry features.
        if not is_int(self.num_tokens) or self.num_tokens < 2:
            raise ValueError(f"`num_tokens` must be an int >= 2, got {self.num_tokens!r}.")
        if self.token_rank is not None and (not is_int(self.token_rank) or self.token_rank <= 0):
            raise ValueError(f"`token_rank` must be a positive int or None (full tokens), got {self.token_rank!r}.")
        if not is_int(self.start_block) or self.start_block < 0:
            raise ValueError(f"`start_block` must be an int >= 0, got {self.start_block!r}.")
        if self.end_block is not None and (not is_int(self.end_block) or self.end_block <= self.start_block):
            raise ValueError(f"`end_block` must be None or an int > start_block={self.start_block}, "
                             f"got {self.end_block!r}.")
        if not isinstance(self.link_queries, bool):
            raise ValueError(f"`link_queries` must be True or False, got {self.link_queries!r}.")
        if not is_int(self.query_dim) or self.query_dim <= 0:
            raise ValueError(f"`query_dim` must be a positive int, got {self.query_dim!r}.")
        if isinstance(self.scale_init, bool) or not isinstance(self.scale_init, (int, float)) \
                or not math.isfinite(self.scale_init):
            raise ValueError(f"`scale_init` must be a finite number, got {self.scale_init!r}.")
        if not isinstance(self.identity_init, bool):
            raise ValueError(f"`identity_init` must be True or False, got {self.identity_init!r}.")


class Reins(BlockRefiner):
    """The tokens and shared MLPs of Rein for a range of blocks (see the module docstring).

    Parameters: ``token_a`` ``(L, m, r)`` and ``token_b`` ``(L, r, c)`` (or ``tokens`` ``(L, m, c)`` without a
    rank), ``token_mlp`` and ``feature_mlp`` (``c → c``), ``scale`` (unless ``identity_init``), and with
    ``link_queries`` ``query_proj`` (``c → Q``) and ``query_merge`` (``3Q → Q``). ``L`` is the number of refined
    blocks. The parameters are zero (the refinement is the identity) until :meth:`reset_parameters`.

    Args:
        config: the options.
        blocks: indices of the refined blocks, in order.
        embed_dim: the ViT's width ``c``.
        patch_size: the ViT's patch size (sets the tokens' initialisation bound).
    """

    method_name = "Rein"
    adapter_tensor_names = ("tokens", "token_a", "token_b")

    def __init__(self, config: ReinConfig, blocks: Sequence[int], embed_dim: int, patch_size: int) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("Rein needs at least one block to refine.")
        self.config = config
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self._blocks = tuple(blocks)
        self._layer_of_block = {block: layer for layer, block in enumerate(self._blocks)}
        layers, m, rank = len(self._blocks), config.num_tokens, config.token_rank
        if rank is None:
            self.tokens = nn.Parameter(torch.zeros(layers, m, embed_dim))
        else:
            self.token_a = nn.Parameter(torch.zeros(layers, m, rank))
            self.token_b = nn.Parameter(torch.zeros(layers, rank, embed_dim))
        self.token_mlp = nn.Linear(embed_dim, embed_dim)
        self.feature_mlp = nn.Linear(embed_dim, embed_dim)
        self.scale = None if config.identity_init else nn.Parameter(torch.zeros(()))
        if config.link_queries:
            self.query_proj = nn.Linear(embed_dim, config.query_dim)
            self.query_merge = nn.Linear(3 * config.query_dim, config.query_dim)
        for param in self.parameters():
            nn.init.zeros_(param)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw Rein's initialisation (from the global RNG unless ``generator`` is given)."""
        patch_area = self.patch_size * self.patch_size
        rank = self.config.token_rank
        # Xavier-uniform-style bound over the patch's pixels and the token width (low-rank: geometric mean of the
        # two factor widths), as released.
        width = self.embed_dim if rank is None else math.sqrt(self.embed_dim * rank)
        bound = math.sqrt(6.0 / (3 * patch_area + width))
        for name in ("tokens",) if rank is None else ("token_a", "token_b"):
            getattr(self, name).uniform_(-bound, bound, generator=generator)
        linears = [self.token_mlp, self.feature_mlp]
        if self.config.link_queries:
            linears += [self.query_proj, self.query_merge]
        for linear in linears:  # nn.Linear's default: Kaiming-uniform(a=√5) weight, U(±1/√fan_in) bias
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
            bias_bound = 1 / math.sqrt(linear.in_features)
            linear.bias.uniform_(-bias_bound, bias_bound, generator=generator)
        if self.scale is None:
            nn.init.zeros_(self.feature_mlp.weight)
            nn.init.zeros_(self.feature_mlp.bias)
        else:
            self.scale.fill_(self.config.scale_init)

    # ------------------------------------------------------------------ the tokens
    def block_tokens(self, block_index: int) -> torch.Tensor:
        """The ``(m, c)`` tokens of block ``block_index``."""
        layer = self._layer_of_block[block_index]
        if self.config.token_rank is None:
            return self.tokens[layer]
        return self.token_a[layer] @ self.token_b[layer]

    def all_tokens(self) -> torch.Tensor:
        """The ``(L, m, c)`` tokens of every refined block, in block order."""
        return self.tokens if self.config.token_rank is None else self.token_a @ self.token_b

    # ------------------------------------------------------------------ BlockRefiner
    @property
    def refined_blocks(self) -> tuple[int, ...]:
        return self._blocks

    def refine(self, tokens: torch.Tensor, block_index: int, num_prefix_tokens: int,
               grid_size: tuple[int, int]) -> torch.Tensor:
        prefix, features = tokens[:, :num_prefix_tokens], tokens[:, num_prefix_tokens:]
        block_tokens = self.block_tokens(block_index)
        similarity = torch.softmax(features @ block_tokens.T * self.embed_dim ** -0.5, dim=-1)
        weighted = similarity[..., 1:] @ self.token_mlp(block_tokens[1:])
        delta = self.feature_mlp(weighted + features)
        if self.scale is not None:
            delta = delta * self.scale
        return torch.cat([prefix, features + delta], dim=1)

    @property
    def decoder_query_shape(self) -> tuple[int, int] | None:
        return (self.config.num_tokens, self.config.query_dim) if self.config.link_queries else None

    def decoder_queries(self) -> torch.Tensor:
        if not self.config.link_queries:
            raise RuntimeError("this Rein was built with link_queries=False and gives no decoder queries.")
        projected = self.query_proj(self.all_tokens())  # (L, m, Q)
        # max / mean / last block, interleaved per channel (the released layout of query_merge's input)
        pooled = torch.stack([projected.amax(dim=0), projected.mean(dim=0), projected[-1]], dim=-1)
        return self.query_merge(pooled.flatten(-2))

    # ------------------------------------------------------------------ AdapterModule
    def option_changes(self, saved_shapes: Mapping[str, Sequence[int]]) -> list[OptionChange]:
        """Rein's options that the saved tensor shapes were made with, where they differ from this module's.

        Read off the shapes: ``token_a`` ``(L, m, r)`` or ``tokens`` ``(L, m, c)`` give the number of refined
        blocks ``L`` (``start_block``/``end_block``, which the shapes cannot tell apart), ``num_tokens`` and
        ``token_rank``; ``query_proj`` gives ``link_queries`` and ``query_dim``; ``scale`` gives ``identity_init``.
        """
        saved = {name: tuple(shape) for name, shape in saved_shapes.items()}
        config, changes = self.config, []
        link = "query_proj.weight" in saved
        if link != config.link_queries:
            changes.append(OptionChange(("link_queries",), link, config.link_queries))
        elif link and saved["query_proj.weight"][0] != config.query_dim:
            changes.append(OptionChange(("query_dim",), saved["query_proj.weight"][0], config.query_dim))
        identity = "scale" not in saved
        if identity != config.identity_init:
            changes.append(OptionChange(("identity_init",), identity, config.identity_init))
        tokens = saved.get("tokens", saved.get("token_a"))
        if tokens is None or len(tokens) != 3:
            return changes
        rank = None if "tokens" in saved else tokens[2]
        if rank != config.token_rank:
            changes.append(OptionChange(("token_rank",), rank, config.token_rank))
        if tokens[1] != config.num_tokens:
            changes.append(OptionChange(("num_tokens",), tokens[1], config.num_tokens))
        if tokens[0] != len(self._blocks):
            changes.append(OptionChange(("start_block", "end_block"), f"{tokens[0]} refined blocks",
                                        f"{len(self._blocks)} refined blocks ({self._blocks[0]}-{self._blocks[-1]})"))
        return changes

    def extra_repr(self) -> str:
        return (f"blocks={self._blocks[0]}..{self._blocks[-1]}, num_tokens={self.config.num_tokens}, "
                f"token_rank={self.config.token_rank}, link_queries={self.config.link_queries}")


def rein_modules(model: nn.Module) -> dict[str, Reins]:
    """All :class:`Reins` modules of ``model``, by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, Reins)}


def _patch_size(model: nn.Module) -> int:
    size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if size is None:
        raise ValueError("Rein adapts a timm ViT: the model has no `patch_embed.patch_size`.")
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    return int(size[0])


def apply_rein(model: nn.Module, config: ReinConfig | dict, initialize: bool = True) -> nn.Module:
    """Attach Rein to a timm ViT in place: every pretrained weight is frozen, only Rein's parameters train.

    The :class:`Reins` module becomes ``model.rein``; the backbone (``FoundationViT``) finds it by type and calls
    it after each refined block.

    Args:
        model: a timm ``VisionTransformer``-like model with ``blocks``, ``embed_dim`` and ``patch_embed``.
        config: a :class:`ReinConfig` or a dict of its fields.
        initialize: draw Rein's initialisation now. ``False`` leaves all Rein parameters at zero (the model's
            function is unchanged) for models whose weights are loaded first; call :func:`initialize_rein` then.

    Returns:
        ``model`` itself, with the config recorded as ``model.adapter_config`` (adapter files store it).

    Raises:
        ValueError: Rein or another adapter method is already applied, the model is no ViT, or the block range does
            not fit the model.
    """
    if isinstance(config, dict):
        config = ReinConfig.from_dict(config)
    elif not isinstance(config, ReinConfig):
        raise TypeError(f"`config` must be a ReinConfig or a dict, got {type(config).__name__}.")
    if rein_modules(model):
        raise ValueError("Rein is already applied to this model (it contains a Reins module).")
    check_not_adapted(model)  # one method per model: its config is the one recorded
    blocks, embed_dim = getattr(model, "blocks", None), getattr(model, "embed_dim", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or not is_int(embed_dim):
        raise ValueError("Rein adapts a timm ViT: the model needs `blocks` (a sequence of blocks) and an int "
                         f"`embed_dim`; got a {type(model).__name__}.")
    patch_size = _patch_size(model)
    depth = len(blocks)
    end = depth if config.end_block is None else config.end_block
    if config.start_block >= depth or end > depth:
        raise ValueError(f"Rein's block range [{config.start_block}, {end}) does not fit the model's {depth} blocks; "
                         "check `start_block`/`end_block`.")
    if hasattr(model, REIN_ATTR):
        raise ValueError(f"the model already has an attribute `{REIN_ATTR}`; Rein cannot be attached there.")
    model.requires_grad_(False)
    reins = Reins(config, range(config.start_block, end), embed_dim, patch_size)
    reins.to(device=next(model.parameters()).device)  # a meta-device model gets meta-device tokens
    setattr(model, REIN_ATTR, reins)
    setattr(model, CONFIG_ATTR, config)
    if initialize:
        reins.reset_parameters()
    return model


def initialize_rein(model: nn.Module) -> nn.Module:
    """Draw Rein's initialisation in every :class:`Reins` module of ``model`` (after the pretrained weights load)."""
    modules = rein_modules(model)
    if not modules:
        raise ValueError("the model has no Rein module; call apply_rein(model, config) first.")
    for module in modules.values():
        module.reset_parameters()
    return model


register_peft_method("Rein", ReinConfig, apply_rein, initialize_rein)
