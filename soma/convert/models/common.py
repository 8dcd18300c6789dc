"""Shared machinery of the checkpoint converters (DINOv2, EVA02, DINOv3): released weights → SoMA's format.

    python tools/convert_models/dinov2.py SRC DST [--arch small|base|large|giant] [--register-tokens 0|4]
                                          [--patch-resample bicubic|pinv [--patch-size 16]]
    python tools/convert_models/eva02.py SRC DST [--arch tiny|small|base|large] [--patch-resample ...]

Our format is ``{"state_dict": ..., "meta": {...}}``: the state dict of the family's timm model at its *native*
patch size (14) and the grid of the file's own position embedding (518 px for the DINOv2 releases, 224 px for
EVA-02). By default nothing is resampled here: the backbones resample the patch and position embeddings to their
own ``patch_size``/``img_size`` when they load it (``FoundationViT.load_pretrained``; timm's pseudo-inverse
kernel resize). ``--patch-resample`` writes the kernel at ``--patch-size`` instead, recorded in ``meta``, so the
backbone loads it as it is:

* ``bicubic``: plain bicubic interpolation of the kernel values, as the official SoMA (and Rein) converters do.
  The kernel then answers a constant patch about ``(16/14)² ≈ 1.31`` times as strongly as the native one does
  a constant patch of the same image at its native scale: the published SoMA numbers were obtained with it.
* ``pinv``: timm's ``resample_patch_embed`` (FlexiViT's pseudo-inverse resize), which keeps the response to
  a resized image, and so the patch-token scale the frozen blocks expect (gain ≈ 1.0). Identical to what the
  backbones do at load time from a native file.

A conversion is: read the file (or a transformers ``save_pretrained`` folder), unwrap the containers
(``model``/``module``/``state_dict``), rewrite a transformers layout into the official one
(:mod:`.hf_layouts`), recognise the family's key layout, read the arch (embedding width, depth) and options
(DINOv2 register tokens) off the shapes and check them against the command line, run the family's conversion
(:mod:`.filters`, the same function the backbones run when they load a release file), load the result into the
timm model (missing weights are an error, dropped ones are listed) and save atomically.
"""
from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from soma.models.backbones import FoundationViT
from soma.utils import load_weights, save_checkpoint_atomic

from .hf_layouts import check_transformers_config, from_transformers, read_transformers_folder, transformers_layout

StateDict = dict[str, torch.Tensor]
# Containers release files put around the weights, outermost first (timm's EVA filter prefers the EMA weights).
CONTAINER_KEYS = ("model_ema", "model", "module", "state_dict")
_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")
PATCH_RESAMPLE_METHODS = ("bicubic", "pinv")
PATCH_KERNEL = "patch_embed.proj.weight"


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
        checkpoint_filter: the family's conversion (:mod:`.filters`): official/transformers → timm keys.
        native_patch: the patch size of the released kernels.
        native_img_size: the pretraining image size, used when the file has no position embedding to read it from.
        signatures: key sets of the known layouts; a file is of the family if it has every key of one of them.
        official_markers: keys only the official (non-timm) layout has; used to name the detected layout.
        layouts: the accepted layouts in words, for error messages.
        transformers_layouts: the transformers model classes whose checkpoints the family reads.
        options: backbone options read off the weights (see :class:`Option`).
        timm_model_name: timm model name of ``(arch's timm name, options)``; default: the arch's name.
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
    timm_model_name: Callable[[str, Mapping[str, int]], str] = field(default=lambda name, options: name)
    patch_resampling: bool = False
    arch_filter: Callable[[Mapping[str, torch.Tensor], list[str]], list[str]] = field(
        default=lambda state, archs: archs)

    @property
    def name(self) -> str:
        """The family's name (the registered backbone's class name, e.g. ``"DINOv2"``)."""
        return self.backbone.__name__


# ---------------------------------------------------------------------------------------------------- reading
def read_source(src: Path) -> Any:
    """The loaded weight file, or the weights of a transformers ``save_pretrained`` folder.

    Raises:
        FileNotFoundError: ``src`` does not exist, or is a folder without ``model.safetensors``.
        ValueError: a transformers ``config.json`` (in the folder, or next to a ``.safetensors`` file) whose model
            type or settings the timm models do not have.
    """
    if src.is_dir():
        return read_transformers_folder(src)
    weights = load_weights(src)
    if src.suffix == ".safetensors" and isinstance(weights, Mapping) and transformers_layout(weights):
        check_transformers_config(src.parent / "config.json")
    return weights


def unwrap(obj: Any) -> StateDict:
    """The tensor dict inside a loaded file, without the containers release files put around it.

    Raises:
        ValueError: the file holds no dict of tensors.
    """
    for key in CONTAINER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"the file holds no state dict of tensors (looked inside {list(CONTAINER_KEYS)}); "
                         f"found {found}.")
    others = sorted(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if others:
        print(f"ignoring {len(others)} non-tensor entries: {others[:8]}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


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


# ---------------------------------------------------------------------------------------------------- checking
def dropped_keys(source: Mapping[str, torch.Tensor], filtered: Mapping[str, torch.Tensor],
                 unexpected: Sequence[str]) -> list[str]:
    """Source keys that do not reach the model: removed by the filter, or kept but with no place in the model.

    A key the filter merely renamed (``mlp.w12`` → ``mlp.fc1``, ``register_tokens`` → ``reg_token``) still
    passes the same tensor on, so it is not counted as dropped.
    """
    passed_on = {id(v) for v in filtered.values()}
    removed = [k for k in source if k not in filtered and id(source[k]) not in passed_on]
    return sorted(set(removed) | set(unexpected))


def check_against_model(family: Family, model: torch.nn.Module, filtered: Mapping[str, torch.Tensor],
                        layout: str, src: Path) -> list[str]:
    """Check that ``filtered`` fills every weight of ``model`` with the right shape.

    Returns:
        The keys ``model`` has no place for (to be dropped).

    Raises:
        ValueError: weights are missing or have the wrong shape; the message names them and the expected layout.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(filtered))
    hint = f"detected the {layout} {family.name} layout; expected {family.layouts}"
    if missing:
        raise ValueError(f"'{src}' lacks {len(missing)} weights of {type(model).__name__} "
                         f"{model.default_cfg.get('architecture')}: {missing[:10]} ({hint}).")
    wrong = [f"{k}: {tuple(v.shape)} (model {tuple(own[k].shape)})" for k, v in filtered.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"'{src}' has {len(wrong)} weights of the wrong shape: {wrong[:5]} ({hint}).")
    return sorted(set(filtered) - set(own))


# ---------------------------------------------------------------------------------------------------- patch kernel
def resample_patch_kernel(kernel: torch.Tensor, size: int, method: str) -> torch.Tensor:
    """The (out, in, k, k) patch-embedding kernel at ``size``×``size`` by ``method`` (see the module docstring).

    Raises:
        ValueError: an unknown method.
    """
    if method == "bicubic":
        # As the official converters: F.interpolate of the kernel values in float32, no antialiasing.
        resized = F.interpolate(kernel.float(), size=(size, size), mode="bicubic", align_corners=False)
        return resized.to(kernel.dtype)
    if method == "pinv":
        from timm.layers import resample_patch_embed

        return resample_patch_embed(kernel, [size, size])  # the backbones' load-time default
    raise ValueError(f"`patch_resample` must be one of {PATCH_RESAMPLE_METHODS}, got {method!r}.")


def dc_gain(native: torch.Tensor, resampled: torch.Tensor) -> float:
    """How strongly ``resampled`` answers a constant patch relative to ``native``.

    The response of a kernel to a constant image is the sum of its weights per (out, in) channel pair; the gain
    is the least-squares slope of the resampled sums against the native ones (about ``(k'/k)²`` for plain
    interpolation, 1.0 for a resize that keeps the response).
    """
    before = native.detach().double().sum((-2, -1)).flatten()
    after = resampled.detach().double().sum((-2, -1)).flatten()
    return float(before @ after / (before @ before))


# ---------------------------------------------------------------------------------------------------- converting
def convert(family: Family, src: str | Path, dst: str | Path, arch: str | None = None,
            patch_resample: str | None = None, patch_size: int = 16, **options: int | None) -> dict[str, Any]:
    """Convert ``src`` (official or timm layout) into SoMA's format at ``dst``.

    Args:
        family: the model family.
        src: the released/timm weight file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``), or a transformers
            ``save_pretrained`` folder.
        dst: the output file; written only when the conversion succeeds.
        arch: the expected arch; default: read off the weights.
        patch_resample: ``"bicubic"`` or ``"pinv"``: write the patch kernel resampled to ``patch_size`` (see
            the module docstring); ``None`` keeps the native kernel.
        patch_size: the kernel size written with ``patch_resample``.
        **options: the family's options (e.g. ``register_tokens``); ``None`` or absent: read off the weights.

    Returns:
        The meta data saved with the weights.

    Raises:
        FileNotFoundError: ``src`` does not exist (or is a folder without ``model.safetensors``).
        RuntimeError: ``src`` is not a readable torch/safetensors file.
        ValueError: a foreign layout, an ``arch``/option that contradicts the weights, missing or misshapen weights.
    """
    import timm

    src, dst = Path(src), Path(dst)
    if patch_resample is not None and patch_resample not in PATCH_RESAMPLE_METHODS:
        raise ValueError(f"`patch_resample` must be one of {PATCH_RESAMPLE_METHODS}, got {patch_resample!r}.")
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"`patch_size` must be a positive int, got {patch_size!r}.")
    state = unwrap(read_source(src))
    hf_layout = transformers_layout(state)
    if hf_layout is not None and hf_layout not in family.transformers_layouts:
        accepted = ", ".join(family.transformers_layouts) or "none"
        raise ValueError(f"'{src}' has the layout of the transformers {hf_layout}, which is not a {family.name} "
                         f"model (transformers layouts read as {family.name}: {accepted}); use the converter of "
                         "its family.")
    state = from_transformers(state)
    layout = detect_layout(family, state) if hf_layout is None else "transformers"
    if hf_layout is not None:
        detect_layout(family, state)  # refuses keys the family has no place for
    arch = infer_arch(family, state, arch)
    found = resolve_options(family, state, options)
    timm_name = family.timm_model_name(family.backbone.arch_zoo[arch][0], found)
    img_size = native_img_size(family, state)
    named = f" ({hf_layout})" if hf_layout else ""
    print(f"{src.name}: {layout} {family.name} layout{named}, arch {arch} ({timm_name}, {img_size} px at patch "
          f"{family.native_patch}), {found or 'no options'}")

    # Built on the meta device: loading with assign=True then moves the file's own tensors in, so a giant model
    # costs no second copy or random initialisation.
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, num_classes=0, patch_size=family.native_patch,
                                  img_size=img_size, **family.backbone.arch_zoo[arch][1])
    filtered = family.checkpoint_filter(dict(state), model)  # a copy: timm's DINOv2 conversion pops keys
    unexpected = check_against_model(family, model, filtered, layout, src)
    model.load_state_dict({k: v for k, v in filtered.items() if k not in unexpected}, strict=True, assign=True)
    dropped = dropped_keys(state, filtered, unexpected)
    if dropped:
        print(f"dropped {len(dropped)} keys the backbone does not use: {dropped[:12]}")
    changed = sorted(set(state) - set(filtered) - set(dropped))
    if changed:
        print(f"renamed {len(changed)} keys to timm's layout (e.g. {changed[:4]})")

    meta = dict(family=family.name, timm_model=timm_name, arch=arch, source=src.name,
                register_tokens=found.get("register_tokens", 0), layout=layout, patch_size=family.native_patch,
                img_size=img_size)
    if hf_layout is not None:
        meta["transformers_model"] = hf_layout
    # A tensor the filter sliced (DINOv2-reg4 `pos_embed[:, 1:]`) would drag its whole storage into the file.
    weights = {k: v if v.untyped_storage().nbytes() == v.numel() * v.element_size() else v.clone()
               for k, v in model.state_dict().items()}
    if patch_resample is not None:
        native = weights[PATCH_KERNEL]
        weights[PATCH_KERNEL] = resample_patch_kernel(native, patch_size, patch_resample)
        gain = dc_gain(native, weights[PATCH_KERNEL])
        # The position grid is unchanged; at the new patch size it covers grid × patch_size pixels.
        meta.update(patch_size=patch_size, img_size=img_size // family.native_patch * patch_size,
                    patch_resample=patch_resample, native_patch_size=family.native_patch)
        print(f"patch kernel {family.native_patch}x{family.native_patch} -> {patch_size}x{patch_size} by "
              f"{patch_resample}: {gain:.3f}x the native kernel's response to a constant patch (DC gain)")
    save_checkpoint_atomic({"state_dict": weights, "meta": meta}, dst)
    print(f"wrote {dst} ({len(weights)} tensors, {sum(v.numel() for v in weights.values()) / 1e6:.1f}M values)")
    return meta


# ---------------------------------------------------------------------------------------------------- command line
def build_parser(family: Family, description: str) -> argparse.ArgumentParser:
    """The command line shared by the converters: ``SRC DST [--arch ARCH]`` plus the family's options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("src", type=Path, help="official release or timm state dict (.pth/.pt/.bin/.safetensors), "
                                               "or a transformers save_pretrained folder / model.safetensors")
    parser.add_argument("dst", type=Path, help="output file, e.g. checkpoints/<name>_converted.pth")
    parser.add_argument("--arch", choices=list(family.backbone.arch_zoo),
                        help="expected arch; default: read off the weights (an error if they disagree)")
    for option in family.options:
        parser.add_argument("--" + option.name.replace("_", "-"), type=int, choices=option.choices,
                            help=f"{option.help}; default: read off the weights (an error if they disagree)")
    if family.patch_resampling:
        parser.add_argument("--patch-resample", choices=PATCH_RESAMPLE_METHODS,
                            help="write the patch kernel resampled to --patch-size: 'bicubic' as the official "
                                 "SoMA converter (DC gain ~1.31, what the published numbers used) or 'pinv' as "
                                 "timm (gain ~1.0); default: keep the native kernel (the backbone resamples it "
                                 "with timm's pinv when it loads the file)")
        parser.add_argument("--patch-size", type=int,
                            help="kernel size written with --patch-resample (default: 16)")
    return parser


def main(family: Family, description: str, argv: Sequence[str] | None = None) -> int:
    """Run a converter's command line; user errors become one ``error:`` line on stderr and exit code 1.

    Args:
        family: the model family.
        description: the ``--help`` description.
        argv: the arguments; default: ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 1 on an error.
    """
    args = vars(build_parser(family, description).parse_args(argv))
    if args.get("patch_size") is not None and args.get("patch_resample") is None:
        print("error: --patch-size needs --patch-resample bicubic|pinv.", file=sys.stderr)
        return 1
    if args.get("patch_size") is None:
        args.pop("patch_size", None)
    try:
        convert(family, args.pop("src"), args.pop("dst"), **args)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
