"""Converting one release file into SoMA's backbone format (what the converters' command lines run).

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
(:mod:`soma.models.backbones.hf_layouts`), recognise the family's key layout, read the arch (embedding width,
depth) and options (DINOv2 register tokens) off the shapes and check them against the command line, run the
family's conversion (:mod:`soma.models.backbones.checkpoint_filters`, the same function the backbones run when they
load a release file), load the result into the timm model (missing weights are an error, dropped ones are listed)
and save atomically.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from soma.models.backbones.hf_layouts import from_transformers, transformers_layout
from soma.utils.checkpoint import save_checkpoint_atomic

from .family import Family, detect_layout, infer_arch, native_img_size, resolve_options
from .patch_kernel import PATCH_KERNEL, PATCH_RESAMPLE_METHODS, dc_gain, resample_patch_kernel
from .reading import read_source, unwrap


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
    timm_name = family.backbone.timm_model_name(arch, **found)
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
