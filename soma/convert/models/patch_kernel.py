"""The patch-embedding kernel at another patch size: the two resampling methods the converters offer.

* ``bicubic``: plain bicubic interpolation of the kernel values, as the official SoMA (and Rein) converters do.
  The kernel then answers a constant patch about ``(16/14)² ≈ 1.31`` times as strongly as the native one does
  a constant patch of the same image at its native scale: the published SoMA numbers were obtained with it.
* ``pinv``: timm's ``resample_patch_embed`` (FlexiViT's pseudo-inverse resize), which keeps the response to
  a resized image, and so the patch-token scale the frozen blocks expect (gain ≈ 1.0). Identical to what the
  backbones do at load time from a native file.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH_RESAMPLE_METHODS = ("bicubic", "pinv")
PATCH_KERNEL = "patch_embed.proj.weight"


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
