"""The float64 partial SVD behind SoMA's initialisation: both paths exact, bad inputs refused."""
import pytest
import torch

from soma.peft import decompose, svd_components


def vit_like_weight(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """A float32 matrix with a ViT-like spectrum: a few large values, a long tail of small, close ones."""
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=generator, dtype=torch.float64))
    k = min(rows, cols)
    s = torch.cat([torch.linspace(40, 5, 8, dtype=torch.float64), torch.logspace(0, -3, k - 8, dtype=torch.float64)])
    return ((u[:, :k] * s) @ v[:, :k].T).float()


@pytest.mark.parametrize("which", ["minor", "principal"])
@pytest.mark.parametrize("shape", [(96, 64), (64, 96), (64, 64)])
def test_gram_path_agrees_with_svd(which, shape):
    weight = vit_like_weight(*shape)
    u1, s1, v1 = svd_components(weight, 6, which, method="svd")
    u2, s2, v2 = svd_components(weight, 6, which, method="gram")
    assert s1.dtype == s2.dtype == torch.float64
    assert torch.allclose(s1, s2, rtol=1e-10)
    assert torch.allclose((u1 * s1) @ v1, (u2 * s2) @ v2, atol=1e-10)
    # orthonormal factors, descending singular values
    assert torch.allclose(u2.T @ u2, torch.eye(6, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(v2 @ v2.T, torch.eye(6, dtype=torch.float64), atol=1e-10)
    assert torch.all(s2[:-1] >= s2[1:])


@pytest.mark.parametrize("which", ["minor", "principal"])
def test_gram_path_without_scipy(monkeypatch, which):
    """soma.peft needs only torch: without SciPy the Gram path uses torch.linalg.eigh and agrees."""
    weight = vit_like_weight(80, 48, seed=1)
    expected = svd_components(weight, 5, which, method="svd")[1]
    monkeypatch.setattr(decompose, "_lapack", lambda: None)
    assert torch.allclose(svd_components(weight, 5, which, method="gram")[1], expected, rtol=1e-10)


def test_selects_the_smallest_or_largest_values():
    weight = vit_like_weight(64, 48)
    values = torch.linalg.svdvals(weight.double())
    assert torch.allclose(svd_components(weight, 4, "minor")[1], values[-4:], rtol=1e-10)
    assert torch.allclose(svd_components(weight, 4, "principal")[1], values[:4], rtol=1e-10)


def test_auto_method_per_device():
    assert decompose.resolve_method("auto", "cpu") == "gram"
    assert decompose.resolve_method("auto", "meta") == "svd"
    assert decompose.resolve_method("svd", "cpu") == "svd"


@pytest.mark.parametrize(
    "weight, r, which, method, message",
    [
        (torch.randn(8, 6), 7, "minor", "svd", "0 < r <= 6"),
        (torch.randn(8, 6), 0, "minor", "svd", "0 < r <= 6"),
        (torch.randn(8, 6), True, "minor", "svd", "0 < r <= 6"),
        (torch.randn(8, 6), 2, "middle", "svd", "`which`"),
        (torch.randn(8, 6), 2, "minor", "qr", "`svd_method`"),
        (torch.randn(2, 8, 6), 2, "minor", "svd", "must be a matrix"),
        (torch.full((8, 6), float("nan")), 2, "minor", "gram", "NaN or Inf"),
        (torch.empty(8, 6, device="meta"), 2, "minor", "svd", "meta device"),
    ],
)
def test_bad_inputs_are_refused(weight, r, which, method, message):
    with pytest.raises(ValueError, match=message):
        svd_components(weight, r, which, method)
