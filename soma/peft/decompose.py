"""Exact partial SVD of a weight matrix in float64.

Minor singular components are what SoMA trains, and they are the ones a float32 decomposition gets wrong, so
everything here runs in float64 whatever the model dtype. Two exact paths:

* ``"svd"``: ``torch.linalg.svd`` of the float64 matrix.
* ``"gram"``: eigendecomposition of the float64 Gram matrix of the smaller side (``WᵀW`` or ``WWᵀ``), the
  other factor reconstructed as ``W V / S``. On CPU only the r needed eigenpairs are computed (LAPACK's
  ``dsyevr`` through SciPy, when installed). The singular values agree with ``"svd"`` to ~1e-13 relative for
  well-conditioned ViT weights, and it is several times faster on CPU (tools/benchmark/svd_init.py).
"""
from __future__ import annotations

from typing import Literal

import torch

try:  # optional: LAPACK's subset eigensolver (3x faster than a full eigh for the r pairs SoMA needs) and
    # BLAS syrk (half the flops of a general product for a Gram matrix)
    from scipy.linalg import blas as _blas
    from scipy.linalg import eigh as _scipy_eigh
except ImportError:  # soma.peft needs only torch
    _blas = _scipy_eigh = None

# Measured with tools/benchmark/svd_init.py on 2 CPU cores (ViT-L shapes, 96 layers): "gram" is faster on CPU.
# On CUDA, float64 eigh and svd are both slow and unmeasured here, so "auto" keeps the reference "svd".
_AUTO_METHOD = {"cpu": "gram"}


def resolve_method(method: str, device: torch.device) -> str:
    """The concrete decomposition used for ``method`` on ``device``."""
    if method == "auto":
        return _AUTO_METHOD.get(device.type, "svd")
    if method not in ("gram", "svd"):
        raise ValueError(f"`svd_method` must be 'auto', 'gram' or 'svd', got {method!r}.")
    return method


def svd_components(
    weight: torch.Tensor, r: int, which: Literal["minor", "principal"], method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The r smallest (``"minor"``) or largest (``"principal"``) singular triplets of ``weight``, in float64.

    Args:
        weight: (out, in) matrix.
        r: number of triplets, ``0 < r <= min(out, in)``.
        which: ``"minor"`` or ``"principal"``.
        method: ``"auto"``, ``"gram"`` or ``"svd"``.

    Returns:
        ``(U_r, S_r, Vh_r)`` with shapes (out, r), (r,), (r, in), singular values in descending order.
    """
    if which not in ("minor", "principal"):
        raise ValueError(f"`which` must be 'minor' or 'principal', got {which!r}.")
    rows, cols = weight.shape
    if not 0 < r <= min(rows, cols):
        raise ValueError(f"rank {r} is out of range for a {rows}x{cols} matrix.")
    w = weight.detach().to(torch.float64)
    if resolve_method(method, weight.device) == "svd":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        keep = slice(0, r) if which == "principal" else slice(len(s) - r, len(s))
        return u[:, keep], s[keep], vh[keep]
    transposed = rows < cols  # decompose the Gram matrix of the smaller side
    a = w.T if transposed else w  # (m, n) with m >= n
    eigvals, eigvecs = _gram_eigenpairs(a, r, which)
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)  # descending like svd
    s = eigvals.clamp_min(0).sqrt()
    v = eigvecs  # (n, r)
    u = (a @ v) / s.clamp_min(torch.finfo(torch.float64).tiny)  # (m, r)
    if transposed:  # a = wᵀ = u s vᵀ  =>  w = v s uᵀ
        u, v = v, u
    return u, s, v.T


def _gram_eigenpairs(a: torch.Tensor, r: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The r smallest (minor) or largest (principal) eigenpairs of ``aᵀa`` (float64), ascending."""
    n = a.shape[1]
    low, high = (n - r, n - 1) if which == "principal" else (0, r - 1)
    if a.device.type == "cpu" and _scipy_eigh is not None:
        x = a.numpy()
        # syrk fills the upper triangle of aᵀa; pass whichever orientation of `a` is Fortran-ordered (no copy).
        gram = _blas.dsyrk(1.0, x, trans=1) if x.flags.f_contiguous else _blas.dsyrk(1.0, x.T, trans=0)
        values, vectors = _scipy_eigh(gram, lower=False, subset_by_index=[low, high], driver="evr",
                                     check_finite=False)
        return torch.from_numpy(values), torch.from_numpy(vectors)
    values, vectors = torch.linalg.eigh(a.T @ a)
    return values[low:high + 1], vectors[:, low:high + 1]
