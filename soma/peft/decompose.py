"""Exact partial SVD of a weight matrix in float64, for SoMA's initialisation (arXiv:2412.04077, §3.1).

The minor singular components are what SoMA trains, and they are exactly the ones a float32 decomposition gets
wrong (their singular values drown in the rounding error of the large ones), so everything here runs in
float64 whatever the model dtype. Two exact paths:

* ``"svd"``: ``torch.linalg.svd`` of the float64 matrix, then the r wanted triplets.
* ``"gram"``: the float64 Gram matrix of the smaller side (``WᵀW`` or ``WWᵀ``) and a symmetric eigensolver
  for its r extreme eigenvectors ``V``; ``U`` and ``S`` then come from the thin SVD of the tall ``W V``
  (a Rayleigh–Ritz step on the exact subspace), which needs no division by ``S`` and keeps ``U`` orthonormal.
  On CPU, when SciPy is installed (it always is next to mmseg/mmdet), the Gram matrix is formed with BLAS
  ``syrk`` (half the flops) and only the r needed eigenpairs are computed (LAPACK ``dsyevr``); otherwise
  ``torch.linalg.eigh`` does the same work on the full spectrum. ``soma.peft`` itself needs only torch.

Both paths agree on the kept singular values to ~1e-12 relative and on the rank-r part to ~1e-10 for ViT
weights (tests/test_peft/test_decompose.py); timings are in tools/benchmark/svd_init.py.
"""
from __future__ import annotations

import functools
from typing import Any, Literal

import torch

# svd_method="auto" per device type, measured with tools/benchmark/svd_init.py on a ViT-L-shaped model
# (96 decompositions of 1024-wide matrices, blocks 8-23, r=16):
#   cpu (2 cores, shared with a compile job): "gram" 7.8 s vs "svd" 51.5 s (float64 loop) and 34.6 s for a
#   naive float32 svd loop, so "gram" (6.6x faster than "svd").
#   cuda: not measured (no GPU was available); "svd" stays the choice there until someone measures otherwise.
_AUTO_METHOD = {"cpu": "gram"}
_WHICH = ("minor", "principal")


def resolve_method(method: str, device: torch.device | str) -> str:
    """The concrete decomposition (``"gram"`` or ``"svd"``) that ``method`` means on ``device``."""
    if method == "auto":
        return _AUTO_METHOD.get(torch.device(device).type, "svd")
    if method not in ("gram", "svd"):
        raise ValueError(f"`svd_method` must be one of ('auto', 'gram', 'svd'), got {method!r}.")
    return method


def svd_components(
    weight: torch.Tensor, r: int, which: Literal["minor", "principal"], method: str = "auto",
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The r smallest (``"minor"``) or largest (``"principal"``) singular triplets of ``weight``, in float64.

    Args:
        weight: an (out, in) matrix of any floating dtype; it is decomposed in float64.
        r: number of triplets, ``0 < r <= min(out, in)``.
        which: ``"minor"`` (SoMA) or ``"principal"`` (PiSSA).
        method: ``"svd"``, ``"gram"`` or ``"auto"`` (see the module docstring; ``"auto"`` resolves for the
            device the decomposition runs on).
        device: where to decompose; default the weight's. A CPU weight decomposed on ``"cuda"`` is streamed:
            only this matrix (in float64) and its workspace occupy the GPU, and the triplets come back to the
            weight's device.

    Returns:
        ``(U_r, S_r, Vh_r)`` in float64 on the weight's device with shapes (out, r), (r,), (r, in), singular
        values in descending order, so that ``U_r @ diag(S_r) @ Vh_r`` is the selected rank-r part of ``weight``.

    Raises:
        ValueError: bad ``which``/``method``/``r``, a non-matrix, a weight with NaN/Inf entries, or a CUDA
            ``device`` without a GPU.
    """
    if which not in _WHICH:
        raise ValueError(f"`which` must be one of {_WHICH}, got {which!r}.")
    if weight.dim() != 2:
        raise ValueError(f"`weight` must be a matrix, got shape {tuple(weight.shape)}.")
    rows, cols = weight.shape
    if isinstance(r, bool) or not isinstance(r, int) or not 0 < r <= min(rows, cols):
        raise ValueError(f"`r` must satisfy 0 < r <= {min(rows, cols)} for a {rows}x{cols} matrix, got {r!r}.")
    target = weight.device if device is None else torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`svd_device` is {str(target)!r} but no CUDA GPU is visible; leave it unset to "
                         "decompose on the weights' device.")
    concrete = resolve_method(method, target)
    if weight.is_meta:
        raise ValueError("cannot decompose a weight on the meta device; materialise and load the weights first.")
    w = weight.detach().to(device=target, dtype=torch.float64)
    if not torch.isfinite(w.sum()):  # NaN/Inf anywhere makes the sum non-finite; no matrix-sized mask
        raise ValueError(f"the {rows}x{cols} weight has NaN or Inf entries; SoMA cannot decompose it.")
    if concrete == "svd":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        keep = slice(0, r) if which == "principal" else slice(s.numel() - r, s.numel())
        u, s, vh = u[:, keep], s[keep], vh[keep]
    else:
        u, s, vh = _gram_components(w, r, which)
    return u.to(weight.device), s.to(weight.device), vh.to(weight.device)


def _gram_components(w: torch.Tensor, r: int, which: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    transposed = w.shape[0] < w.shape[1]  # the Gram matrix of the smaller side is the cheaper one
    a = w.T if transposed else w  # (m, n) with m >= n
    v = _extreme_eigenvectors(a, r, which)  # (n, r), an orthonormal basis of the wanted right subspace
    # Rayleigh–Ritz: a v = u s qh  =>  a (v qhᵀ) = u s. Exact singular triplets of `a` on span(v), descending.
    u, s, qh = torch.linalg.svd(a @ v, full_matrices=False)
    v = v @ qh.T
    if transposed:  # w = aᵀ, so its left factor is v and its right factor u
        return v, s, u.T
    return u, s, v.T


@functools.lru_cache(maxsize=None)
def _lapack() -> tuple[Any, Any] | None:
    """SciPy's BLAS module and ``eigh`` if installed (imported lazily: ``soma.peft`` needs only torch)."""
    try:
        from scipy.linalg import blas, eigh
    except ImportError:
        return None
    return blas, eigh


def _extreme_eigenvectors(a: torch.Tensor, r: int, which: str) -> torch.Tensor:
    """The eigenvectors of ``aᵀa`` for its r smallest (minor) or largest (principal) eigenvalues."""
    n = a.shape[1]
    low, high = (n - r, n - 1) if which == "principal" else (0, r - 1)
    lapack = _lapack() if a.device.type == "cpu" else None
    if lapack is not None:
        blas, eigh = lapack
        x = a.numpy()
        # syrk fills one triangle of aᵀa with half the flops of a general product; hand it whichever
        # orientation of `a` is Fortran-ordered so that SciPy does not copy it.
        gram = blas.dsyrk(1.0, x, trans=1) if x.flags.f_contiguous else blas.dsyrk(1.0, x.T, trans=0)
        _, vectors = eigh(gram, lower=False, subset_by_index=[low, high], driver="evr", check_finite=False)
        return torch.from_numpy(vectors)
    _, vectors = torch.linalg.eigh(a.mT @ a)  # ascending eigenvalues
    return vectors[:, low:high + 1]
