"""The faster co-PCA (float32 Gram products, float64 eigensolver, subset solver for large Grams) stays
within float32 tolerance of the all-float64 computation (PROTOCOL §3.1)."""
import numpy as np
import torch

from sdfuse.protocol.fusion import _top_eigenpairs, co_pca
from sdfuse.protocol.matching import nearest_patches


def _all_float64(src, trg, dim):
    stacked = torch.cat([src, trg]).double()
    centred = stacked - stacked.mean(dim=0, keepdim=True)
    if len(centred) < centred.shape[1]:
        values, vectors = torch.linalg.eigh(centred @ centred.T)
        top = values.argsort(descending=True)[:dim]
        return vectors[:, top] * values[top].clamp_min(0).sqrt()
    values, vectors = torch.linalg.eigh(centred.T @ centred)
    return centred @ vectors[:, values.argsort(descending=True)[:dim]]


def _decaying(rows, cols, seed):
    """Tokens with a power-law spectrum and an offset, like real features (harder than white noise)."""
    gen = torch.Generator().manual_seed(seed)
    rank = min(rows, cols)
    u, v = torch.randn(rows, rank, generator=gen), torch.randn(rank, cols, generator=gen) / rank ** 0.5
    return (u * torch.arange(1, rank + 1) ** -0.8) @ v * 100 + torch.randn(cols, generator=gen) * 3


def test_subset_solver_equals_full_eigh():
    x = torch.randn(300, 1100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gram = x.T @ x
    values, vectors = _top_eigenpairs(gram, 64)              # 1100 ≥ 1024 and 64 ≤ 1100/4: subset solver
    full_values, full_vectors = torch.linalg.eigh(gram)
    assert values.dtype == torch.float64 and vectors.shape == (1100, 64)
    assert torch.allclose(values, full_values.flip(0)[:64], rtol=1e-10)
    overlap = (vectors.T @ full_vectors.flip(1)[:, :64]).abs()  # same vectors up to sign
    assert torch.allclose(overlap.diagonal(), torch.ones(64, dtype=torch.float64), atol=1e-8)


def test_float32_inputs_match_the_float64_computation():
    for rows, cols in ((450, 1280), (1800, 1280), (2400, 320)):   # layer-2-, layer-5- and layer-8-like shapes
        x = _decaying(rows, cols, seed=rows)
        src, trg = x[: rows // 2], x[rows // 2:]
        a, b = co_pca(src, trg, 256)
        assert a.dtype == torch.float32 and a.shape == (rows // 2, min(256, cols))
        fast = torch.cat([a, b]).double()
        exact = _all_float64(src, trg, 256)
        gram_fast, gram_exact = fast @ fast.T, exact @ exact.T       # distances: invariant to sign/rotation
        assert (gram_fast - gram_exact).abs().max() <= 1e-5 * gram_exact.abs().max()
        rows_idx = np.arange(0, rows // 2, 7)
        assert (nearest_patches(a, b, rows_idx).tolist()
                == nearest_patches(exact[: rows // 2], exact[rows // 2:], rows_idx).tolist())


def test_float64_inputs_stay_float64():
    x = _decaying(300, 200, seed=3).double()
    a, b = co_pca(x[:150], x[150:], 40)
    assert a.dtype == torch.float64
    exact = _all_float64(x[:150], x[150:], 40)
    assert torch.allclose(torch.cat([a, b]).abs(), exact.abs(), atol=1e-9 * exact.abs().max())
