"""A vision foundation ViT from timm as an OpenMMLab backbone, with optional SoMA adaptation.

One class serves every setting of the paper (arXiv:2412.04077): frozen backbone, full fine-tuning, and
parameter-efficient tuning (SoMA, PiSSA, LoRA via ``peft=dict(type="SoMA", init=...)``). Families
(DINOv2, EVA02, ...) subclass it and only say which timm model to build, how its tokens are embedded and which
layers SoMA adapts by default.

Order of initialisation matters. The SoMA layers are *wrapped* in ``__init__`` (so a saved SoMA checkpoint
loads into the same structure at test time), but the SVD split runs in :meth:`init_weights`, *after* the
pretrained weights are in place: decomposing random weights and loading the checkpoint afterwards would
silently train something else. The one exception is ``peft=dict(init="released")``, which reproduces exactly
that behaviour of the official SoMA code on purpose: adapters from a seeded replay of the random construction
weights, base weights as loaded (see :func:`soma.peft.initialize_soma`).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from soma.peft import adapter_layers, adapter_modules, build_peft_config, trainable_parameters
from soma.peft.base import BlockRefiner
from soma.peft.frozen_dtype import cast_frozen_weights, check_device_supports, frozen_autocast, resolve_frozen_dtype

from ...utils.checkpoint import load_weights
from ...utils.errors import ConfigError, UserError


class PretrainedWeightsError(UserError, KeyError, ValueError):
    """A pretrained file (``init_cfg``) whose weights do not fit the backbone: another family, size or layout."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


# Layer-scale parameters in timm's ViT blocks: LayerScale modules' ``gamma`` (ViT/DINOv2), ``gamma_1``/``gamma_2``
# (Eva).
LAYER_SCALE_NAMES = ("gamma", "gamma_1", "gamma_2")


def resize_pyramid(features: Sequence[torch.Tensor], scales: Sequence[float]) -> list[torch.Tensor]:
    """Parameter-free multi-scale maps from same-stride ViT maps: bilinear resize of map i by ``scales[i]``."""
    if len(features) != len(scales):
        raise ValueError(f"`out_scales` has {len(scales)} entries but there are {len(features)} outputs.")
    return [
        f if s == 1 else F.interpolate(f, scale_factor=s, mode="bilinear", align_corners=False)
        for f, s in zip(features, scales)
    ]


@contextmanager
def fused_attention() -> Iterator[None]:
    """Build timm models with ``F.scaled_dot_product_attention`` (flash/memory-efficient kernels on GPU).

    timm's attention modules read the flag once, when they are constructed (``timm.layers.use_fused_attn``):
    inside this block it is on whatever the import-time ``TIMM_FUSED_ATTN`` setting says, and it is restored
    afterwards. In timm's ONNX-export mode (``set_exportable``) it stays off, as timm wants.
    """
    from timm.layers import is_exportable, set_fused_attn, use_fused_attn

    if is_exportable():  # use_fused_attn() is False whatever the setting: nothing to switch, nothing to read
        yield
        return
    previous = 2 if use_fused_attn(experimental=True) else 1 if use_fused_attn() else 0
    set_fused_attn(True, experimental=previous > 1)
    try:
        yield
    finally:
        set_fused_attn(previous > 0, experimental=previous > 1)


def run_block(block: nn.Module, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """One transformer block; the function ``compile_blocks`` compiles."""
    return block(tokens, **kwargs)


class FoundationViT(BaseModule):
    """Base class of the ViT backbones (see the module docstring).

    Subclasses define ``arch_zoo`` (arch → (timm model name, timm kwargs, default out_indices)),
    ``default_peft_targets``, :meth:`_checkpoint_filter` and :meth:`_embed`.

    Args:
        arch: one of ``arch_zoo``'s keys (e.g. ``"large"``; ``"tiny"`` for tests).
        img_size: training crop size; the absolute position embedding is resized to it (and dynamically
            resampled for other input sizes).
        patch_size: patch size; pretrained kernels of another size are resampled with timm's helper.
        out_indices: blocks whose outputs are returned. Default: the arch's (``(7, 11, 15, 23)`` for large).
        out_scales: bilinear resize factor of each output (``(4, 2, 1, 0.5)``: strides 4/8/16/32 at patch
            16), or ``None`` for the raw maps.
        final_norm: apply the final LayerNorm to the outputs.
        frozen: without ``peft``: ``True`` freezes the backbone (frozen baseline), ``False`` trains it all
            (full fine-tuning). Must stay ``None``/``True`` with ``peft``.
        freeze_norms_and_embeddings: with ``frozen=False``, keep the patch and position embeddings, the
            cls/register tokens, every normalisation layer and every layer scale frozen; the other block weights
            (attention and MLP Linears) train. This is the released full fine-tuning baseline.
        peft: ``dict(type="SoMA", r=16, start_block=8, init="minor"|"principal"|"lora"|"released", ...)``: the
            :class:`soma.peft.SoMAConfig` fields; ``type`` picks another registered adapter method
            (``soma.peft.PEFT_METHODS``: ``"DoRA"``, ``"HFPeft"``, ...). ``target_modules`` defaults to the family's.
        drop_path_rate: stochastic depth of the adapted/trained blocks.
        with_cp: gradient checkpointing of the trained blocks.
        compile_blocks: ``torch.compile`` each block: ``True``, or a dict of ``torch.compile`` keyword arguments
            (e.g. ``dict(mode="max-autotune")``). Default: ``False``. The block loop (frozen blocks under
            no-grad, checkpointing) stays eager, and the blocks share one compiled function.
        frozen_dtype: ``"bfloat16"`` stores every frozen weight (SoMA's residuals included, norms excepted) in
            bfloat16 once the pretrained weights are loaded and the adapters initialised, and runs the backbone
            under bfloat16 autocast; adapters and trained biases stay float32 (:mod:`soma.peft.frozen_dtype`).
            Default: ``None`` (float32).
        init_cfg: ``dict(type="Pretrained", checkpoint=PATH)``: a converted checkpoint (tools/convert_models)
            or the official/timm release file; converted by the family's checkpoint filter.
        timm_kwargs: extra keyword arguments for the timm model (advanced).
    """

    arch_zoo: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {}
    default_peft_targets: tuple[str, ...] = ()
    # Constructor options (set as attributes before FoundationViT.__init__) that choose the timm model of an arch.
    timm_name_options: tuple[str, ...] = ()
    # Per-arch defaults of ``peft`` options the config leaves unset (arch → value); see the families' docstrings.
    default_start_blocks: dict[str, int] = {}
    default_fused_splits: dict[str, dict[str, int]] = {}

    def __init__(
        self,
        arch: str = "large",
        img_size: int = 512,
        patch_size: int = 16,
        out_indices: Sequence[int] | None = None,
        out_scales: Sequence[float] | None = (4.0, 2.0, 1.0, 0.5),
        final_norm: bool = False,
        frozen: bool | None = None,
        freeze_norms_and_embeddings: bool = False,
        peft: dict | None = None,
        drop_path_rate: float = 0.0,
        with_cp: bool = False,
        compile_blocks: bool | dict = False,
        frozen_dtype: str | None = None,
        init_cfg: dict | None = None,
        timm_kwargs: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        try:
            self.frozen_dtype = resolve_frozen_dtype(frozen_dtype)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.frozen_dtype is not None and frozen is False:
            raise ConfigError("`frozen_dtype` stores the frozen base in low precision, but `frozen=False` trains "
                              "every weight: drop `frozen_dtype` (or use `peft`).")
        if arch not in self.arch_zoo:
            raise ConfigError(f"`arch` must be one of {sorted(self.arch_zoo)} for {type(self).__name__}, got {arch!r}.")
        if peft is not None and frozen is False:
            raise ConfigError("`frozen=False` (full fine-tuning) cannot be combined with `peft`; drop one of them.")
        if freeze_norms_and_embeddings and (frozen is not False or peft is not None):
            raise ConfigError("`freeze_norms_and_embeddings=True` is an option of full fine-tuning: set `frozen=False` "
                             "and no `peft`.")
        _, arch_kwargs, default_indices = self.arch_zoo[arch]
        self.arch = arch
        self.vit = self._build_timm_model(
            self.timm_model_name(arch, **{option: getattr(self, option) for option in self.timm_name_options}),
            dict(arch_kwargs, img_size=img_size, patch_size=patch_size, num_classes=0, dynamic_img_size=True,
                 drop_path_rate=drop_path_rate, **(timm_kwargs or {})),
        )
        depth = len(self.vit.blocks)
        self.out_indices = tuple(out_indices if out_indices is not None else default_indices)
        if not self.out_indices or any(not 0 <= i < depth for i in self.out_indices):
            raise ConfigError(f"`out_indices` must be block indices in [0, {depth - 1}], got {self.out_indices}.")
        if out_scales is not None and len(out_scales) != len(self.out_indices):
            raise ConfigError(f"`out_scales` {tuple(out_scales)} must have one entry per out index {self.out_indices}.")
        self.out_scales = tuple(out_scales) if out_scales is not None else None
        self.final_norm = final_norm
        self.with_cp = with_cp
        if not isinstance(compile_blocks, (bool, dict)):
            raise TypeError(f"`compile_blocks` must be a bool or a dict of torch.compile options, "
                            f"got {compile_blocks!r}.")
        # A compiled free function, not Module.compile(): a compiled bound method would survive deepcopy (EMA)
        # still bound to the original module.
        self._run_block = (torch.compile(run_block, **({} if compile_blocks is True else compile_blocks))
                           if compile_blocks is not False else run_block)
        # Blocks after the last output and an unused final norm would be parameters DDP never sees a gradient for.
        self.vit.prune_intermediate_layers(list(self.out_indices), prune_norm=not final_norm, prune_head=True)

        self.peft_method, self.peft_config = None, None
        if peft is not None:
            try:
                defaults: dict[str, Any] = dict(target_modules=self.default_peft_targets)
                if arch in self.default_start_blocks:
                    defaults["start_block"] = self.default_start_blocks[arch]
                if arch in self.default_fused_splits:
                    defaults["fused_splits"] = dict(self.default_fused_splits[arch])
                self.peft_method, self.peft_config = build_peft_config(peft, defaults=defaults)
                self._check_peft_blocks(len(self.vit.blocks))
                # Wrap now so checkpoints of adapted models load at test time; the initialisation (e.g. SoMA's SVD
                # split) waits for init_weights(), after the pretrained weights are loaded.
                self.peft_method.apply(self.vit, self.peft_config, False)
            except ValueError as exc:  # the options do not fit this backbone (no matching layer, rank too large)
                if isinstance(exc, UserError):
                    raise
                raise ConfigError(f"`model.backbone.peft` ({type(self).__name__}-{arch}): {exc}") from exc
        else:
            self.vit.requires_grad_(not (frozen is None or frozen))
            if freeze_norms_and_embeddings:
                self._freeze_norms_and_embeddings()

    def _check_peft_blocks(self, depth: int) -> None:
        """Refuse adapted blocks beyond the ones the backbone runs (``depth``, after pruning to ``out_indices``)."""
        start = getattr(self.peft_config, "start_block", None)
        if isinstance(start, int) and start >= depth:
            raise ConfigError(
                f"`model.backbone.peft.start_block`={start} lies beyond the blocks {type(self).__name__}-{self.arch} "
                f"runs (0-{depth - 1}, up to the last of `out_indices` {self.out_indices}): no block would be "
                f"adapted. Choose a start_block below {depth}.")

    # ------------------------------------------------------------------ building and loading
    @classmethod
    def timm_model_name(cls, arch: str, **options: Any) -> str:
        """The timm model that ``arch`` builds with ``options`` (the backbone's :attr:`timm_name_options`; others
        are ignored): the one rule the backbones and the converters use."""
        return cls.arch_zoo[arch][0]

    def _build_timm_model(self, model_name: str, kwargs: dict[str, Any]) -> nn.Module:
        import timm

        # What rebuilds this timm model outside SoMA (tools/export_peft_adapter.py prints it).
        self.timm_create_args = (model_name, dict(kwargs))
        with fused_attention():
            model = timm.create_model(model_name, pretrained=False, **kwargs)
        # timm's Eva attention with a fused qkv and q/v biases calls F.linear on `qkv.weight` directly, which
        # would bypass a SoMA-wrapped qkv (EVA-02 tiny/small, DINOv3 qkvb); its `qkv_bias_separate` option adds
        # the bias after `qkv(x)` instead, keeping the layer's own forward in the path. `Eva` does not forward
        # that option to its blocks (timm 1.0.31), so it is set on the built attention modules
        # (tests/test_models/test_timm_api.py pins that the adapted qkv runs).
        for block in model.blocks:
            if hasattr(block.attn, "qkv_bias_separate"):
                block.attn.qkv_bias_separate = True
        return model

    def _checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Convert a release/timm state dict to this model's keys, resampling patch and position embeddings."""
        raise NotImplementedError

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Patch-embed ``x`` and add position information; returns the tokens and extra block kwargs."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """Load the pretrained weights (``init_cfg``), then initialise the adapters from them (SoMA's SVD split)."""
        if self.init_cfg is not None and self.init_cfg.get("type") == "Pretrained":
            self.load_pretrained(self.init_cfg["checkpoint"])
        elif self.init_cfg is not None:
            super().init_weights()
        if self.peft_method is not None:
            self.peft_method.initialize(self.vit)  # SoMA init="released": replays the seeded construction draws
            print_log(f"{type(self).__name__}-{self.arch} {self.peft_method.name}: "
                      f"{trainable_parameters(self.vit)}", logger="current")
        self.cast_frozen_base()
        self._is_init = True

    def cast_frozen_base(self) -> int:
        """Store the frozen weights in ``frozen_dtype`` (after loading and the SVD split); returns the bytes saved."""
        if self.frozen_dtype is None:
            return 0
        try:
            check_device_supports(self.frozen_dtype, next(self.vit.parameters()).device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        saved = cast_frozen_weights(self.vit, self.frozen_dtype)
        print_log(f"{type(self).__name__}-{self.arch}: frozen base stored in {self.frozen_dtype} "
                  f"({saved / 2**30:.2f} GiB saved)", logger="current")
        return saved

    def load_pretrained(self, checkpoint: str) -> None:
        """Load pretrained weights into the (possibly adapted) timm model; fail on any missing weight."""
        state = load_weights(checkpoint)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            self._check_resampled_kernel(checkpoint, state.get("meta"))
            state = state["state_dict"]
        try:
            state = self._checkpoint_filter(state)
        except (RuntimeError, ValueError, KeyError) as exc:  # e.g. a position embedding of another token layout
            raise PretrainedWeightsError(
                f"cannot adapt pretrained checkpoint '{checkpoint}' to {type(self).__name__}-{self.arch}: {exc}; "
                "check the backbone options (arch, `register_tokens`) against the file."
            ) from exc
        # An adapted layer keeps the pretrained weight in its base layer (for SoMA: until the SVD split).
        wrapped = {name: layer.base_layer_name for name, layer in adapter_layers(self.vit).items()}
        remapped = {}
        for key, value in state.items():
            module, _, leaf = key.rpartition(".")
            remapped[f"{module}.{wrapped[module]}.{leaf}" if module in wrapped else key] = value
        own = self.vit.state_dict()
        # Adapter tensors (of adapted layers and of adapter modules) are initialised, never loaded from a
        # pretrained file.
        adapter_keys = {k for k in own for n, base in wrapped.items()
                        if k.startswith(f"{n}.") and not k.startswith(f"{n}.{base}.")}
        adapter_keys |= {k for k in own for n in adapter_modules(self.vit) if k.startswith(f"{n}.")}
        missing = sorted(set(own) - set(remapped) - adapter_keys)
        unexpected = sorted(set(remapped) - set(own))
        if missing:
            raise PretrainedWeightsError(
                f"pretrained checkpoint '{checkpoint}' lacks {len(missing)} weights of {type(self).__name__}-"
                f"{self.arch} (e.g. {missing[:5]}); is it the right model family/size? Convert release files "
                "with tools/convert_models/ (see checkpoints/README.md)."
            )
        foreign = [k for k in unexpected if not self._is_unused_weight(k)]
        if foreign:
            raise PretrainedWeightsError(
                f"pretrained checkpoint '{checkpoint}' has weights {type(self).__name__}-{self.arch} has no place "
                f"for (e.g. {foreign[:5]}); check the backbone options (e.g. `register_tokens`) against the file."
            )
        for key in unexpected:
            remapped.pop(key, None)
        mismatched = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in remapped.items()
                      if v.shape != own[k].shape]
        if mismatched:
            raise PretrainedWeightsError(f"pretrained checkpoint '{checkpoint}' has weights of the wrong shape for "
                             f"{type(self).__name__}-{self.arch}: {mismatched[:5]}")
        self.vit.load_state_dict(remapped, strict=False)
        if unexpected:
            print_log(f"ignored {len(unexpected)} checkpoint weights this backbone does not use "
                      f"(pruned blocks/norm, heads): {unexpected[:8]}", logger="current")
        print_log(f"loaded pretrained {type(self).__name__}-{self.arch} weights from {checkpoint}", logger="current")

    def _check_resampled_kernel(self, checkpoint: str, meta: Any) -> None:
        """Refuse a file whose kernel a converter resampled (``--patch-resample``) to another patch size."""
        if not isinstance(meta, dict) or not meta.get("patch_resample"):
            return
        own = self.vit.patch_embed.proj.weight.shape[-1]
        if meta.get("patch_size") != own:
            raise PretrainedWeightsError(f"pretrained checkpoint '{checkpoint}' holds a patch kernel resampled to "
                             f"{meta.get('patch_size')}x{meta.get('patch_size')} ({meta['patch_resample']}), but "
                             f"{type(self).__name__} has patch_size {own}; convert the release file again with "
                             f"--patch-size {own}, or without --patch-resample.")

    def _is_unused_weight(self, key: str) -> bool:
        """A checkpoint weight of a part this backbone pruned or never has (later blocks, final norm, heads)."""
        match = re.match(r"blocks\.(\d+)\.", key)
        if match:
            return int(match.group(1)) >= len(self.vit.blocks)
        return key.split(".")[0] in ("norm", "fc_norm", "head", "head_drop", "mask_token", "lm_head")

    # ------------------------------------------------------------------ freezing
    def _freeze_norms_and_embeddings(self) -> None:
        """Freeze all but the blocks (embeddings, tokens) and, in the blocks, normalisation layers and layer scales."""
        for name, param in self.vit.named_parameters():
            if not name.startswith("blocks."):
                param.requires_grad_(False)
        for module in self.vit.blocks.modules():
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or type(module).__name__.endswith("Norm"):
                module.requires_grad_(False)
        for name, param in self.vit.blocks.named_parameters():
            if name.rpartition(".")[2] in LAYER_SCALE_NAMES:
                param.requires_grad_(False)

    def _find_first_trained_block(self, refiners: dict[int, list[BlockRefiner]] | None = None) -> int:
        """Index of the first block with a trainable parameter (found by structure, not by name).

        Read from the current ``requires_grad`` flags at every use, so that freezing or unfreezing after
        construction (``requires_grad_``) takes effect instead of leaving blocks under no-grad. A block refiner
        (Rein) counts for the first block it refines, wherever it sits in the ViT; ``refiners`` is
        :meth:`_block_refiners` when the caller has it already.
        """
        blocks = self.vit.blocks
        refiners = self._block_refiners() if refiners is None else refiners
        refiner_params = {id(p) for group in refiners.values() for refiner in group for p in refiner.parameters()}
        stem_trained = any(p.requires_grad for n, p in self.vit.named_parameters()
                           if not n.startswith("blocks.") and id(p) not in refiner_params)
        if stem_trained:
            return 0
        for index, block in enumerate(blocks):
            parts = [block, *refiners.get(index, ())]
            if any(p.requires_grad for part in parts for p in part.parameters()):
                return index
        return len(blocks)

    def _block_refiners(self) -> dict[int, list[BlockRefiner]]:
        """The ViT's block refiners (found by type, e.g. Rein's tokens), by index of each block they refine."""
        refiners: dict[int, list[BlockRefiner]] = {}
        for module in self.vit.modules():
            if isinstance(module, BlockRefiner):
                for index in module.refined_blocks:
                    refiners.setdefault(index, []).append(module)
        return refiners

    def train(self, mode: bool = True) -> "FoundationViT":
        """Keep the frozen stem and blocks in eval mode (no dropout/drop-path in parts that do not train)."""
        super().train(mode)
        first_trained = self._find_first_trained_block() if mode else 0
        if first_trained > 0:
            for name, module in self.vit.named_children():
                if name != "blocks" and not isinstance(module, BlockRefiner):
                    module.eval()
            for block in self.vit.blocks[:first_trained]:
                block.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int] | None = None,
                              norm: bool | None = None) -> list[torch.Tensor]:
        """Per-block feature maps (B, C, H/p, W/p) of blocks ``indices`` (default ``out_indices``), in that order.

        With a ``frozen_dtype`` base the blocks run under that dtype's autocast; the maps come back in float32
        unless an outer autocast (AMP) is on.
        """
        outer_autocast = not x.is_meta and torch.is_autocast_enabled(x.device.type)
        with frozen_autocast(x, self.frozen_dtype):
            features = self._forward_blocks(x, indices, norm)
        if self.frozen_dtype is not None and not outer_autocast:
            features = [f.float() for f in features]
        return features

    def _forward_blocks(self, x: torch.Tensor, indices: Sequence[int] | None = None,
                        norm: bool | None = None) -> list[torch.Tensor]:
        """:meth:`forward_intermediates` at the current precision.

        The stem and blocks before the first trained block run without autograd: nothing there needs a
        gradient, so no activations are kept for them. Block refiners attached to the ViT (Rein) refine the
        tokens right after the blocks they name, before the output is taken and the next block runs.

        Raises:
            ValueError: ``indices`` names a block this backbone does not keep (blocks after the last of
                ``out_indices`` are pruned at construction), or ``norm=True`` but the final norm was pruned
                (``final_norm=False``).
        """
        indices = self._check_intermediate_request(indices, norm)
        norm = self.final_norm if norm is None else norm
        batch, _, height, width = x.shape
        grid_h, grid_w = self.vit.patch_embed.dynamic_feat_size((height, width))
        prefix = self.vit.num_prefix_tokens
        refiners = self._block_refiners()
        first_trained = self._find_first_trained_block(refiners) if torch.is_grad_enabled() else len(self.vit.blocks)
        with torch.set_grad_enabled(torch.is_grad_enabled() and first_trained == 0):
            tokens, block_kwargs = self._embed(x)
        outputs = {}
        for index, block in enumerate(self.vit.blocks[: max(indices) + 1]):
            trained = index >= first_trained
            with torch.set_grad_enabled(trained):
                if trained and self.with_cp and self.training:
                    tokens = checkpoint(self._run_block, block, tokens, use_reentrant=False, **block_kwargs)
                else:
                    tokens = self._run_block(block, tokens, **block_kwargs)
                for refiner in refiners.get(index, ()):
                    tokens = refiner.refine(tokens, index, prefix, (grid_h, grid_w))
            if index in indices:
                outputs[index] = self.vit.norm(tokens) if norm else tokens
        return [outputs[i][:, prefix:].reshape(batch, grid_h, grid_w, -1).permute(0, 3, 1, 2).contiguous()
                for i in indices]

    def _check_intermediate_request(self, indices: Sequence[int] | None, norm: bool | None) -> tuple[int, ...]:
        """``indices`` as a tuple, refused where :meth:`forward_intermediates` cannot give what is asked (timm's
        version checks its indices too; pruned blocks and a pruned norm would otherwise be skipped silently)."""
        if norm and not self.final_norm:
            raise ValueError("`norm=True` needs the final norm, which this backbone pruned (built with "
                             "`final_norm=False`); build it with `final_norm=True` or leave `norm` unset.")
        if indices is None:
            return self.out_indices
        kept = len(self.vit.blocks)
        if isinstance(indices, (int, str)) or not isinstance(indices, Sequence):
            raise ValueError(f"`indices` must be a sequence of block indices in [0, {kept - 1}], got {indices!r} "
                             "(timm's last-n int is not supported).")
        bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < kept]
        if not indices or bad:
            raise ValueError(f"`indices` {list(indices)} must be block indices in [0, {kept - 1}]: this backbone "
                             f"keeps blocks 0-{kept - 1} only (those after the last of `out_indices` "
                             f"{self.out_indices} are pruned); add a block to `out_indices` to take its output.")
        return tuple(indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Multi-scale maps: block outputs of ``out_indices`` resized by ``out_scales``."""
        features = self.forward_intermediates(x)
        if self.out_scales is not None:
            features = resize_pyramid(features, self.out_scales)
        return tuple(features)

    @property
    def embed_dim(self) -> int:
        """Channels of every output map."""
        return self.vit.embed_dim
