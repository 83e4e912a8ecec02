"""Known answers for co-PCA (exact and randomised), its Gram and eigen steps, and the fusion strategies
(PROTOCOL §3.1, §5.4): tokens built with known principal axes (orthogonal ±1 Walsh columns of distinct
scales, turned by a Householder reflection), float64 NumPy SVDs, and hand-worked centring."""
import numpy as np
import pytest
import scipy.linalg
import torch
from torch._lowrank import get_approximate_basis

from sdfuse.protocol.fusion import (_gram, _top_eigenpairs, co_pca_lowrank, co_pca_sizes, combine,
                                    pca_lowrank_axes)


def _householder(n, seed):
    """An n × n orthogonal reflection I − 2vvᵀ (dense, cheap to build), float64."""
    v = np.random.default_rng(seed).standard_normal(n)
    v /= np.linalg.norm(v)
    return np.eye(n) - 2 * np.outer(v, v)


def _known_tokens(rows, cols, scales, seed=0):
    """Tokens whose principal axes are known by construction: rows × cols = W·diag(scales)·R + μ, with W
    the first len(scales) non-constant Walsh columns (±1, orthogonal, zero mean over the rows), R
    orthonormal rows of a reflection and μ an offset. Returns (tokens, expected projection W·diag(scales),
    axes R), float64; the projection holds with the rows centred on their joint mean."""
    walsh = scipy.linalg.hadamard(rows)[:, 1:len(scales) + 1].astype(np.float64)
    axes = _householder(cols, seed)[:len(scales)]
    offset = np.random.default_rng(seed + 1).uniform(-5, 5, cols)
    projection = walsh * np.asarray(scales, dtype=np.float64)
    return projection @ axes + offset, projection, axes


def _assert_columns_up_to_sign(got, expected, tol):
    """Each column of ``got`` equals the same column of ``expected`` or its negative (PCA fixes an axis
    only up to its sign, PROTOCOL §3.1), within ``tol`` of the largest entry."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    signs = np.sign(np.sum(got * expected, axis=0))
    assert (signs != 0).all()
    assert np.abs(got - expected * signs).max() <= tol * np.abs(expected).max()


# --- _gram and _top_eigenpairs ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("outer", [True, False])
def test_gram_is_the_lower_triangle_of_the_product_in_the_input_dtype(dtype, outer):
    """XXᵀ (outer) or XᵀX, lower triangle, in the dtype of X (float32 inputs are multiplied in float32)."""
    x = np.random.default_rng(3).standard_normal((5, 3))
    gram = _gram(torch.from_numpy(x).to(dtype), outer=outer)
    xr = x.astype(np.float32).astype(np.float64) if dtype == torch.float32 else x
    expected = xr @ xr.T if outer else xr.T @ xr
    assert gram.dtype == dtype and gram.shape == expected.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert np.allclose(np.tril(gram.numpy()), np.tril(expected), rtol=tol, atol=tol)


@pytest.mark.parametrize("n, dim", [(1024, 3), (6, 3), (6, 6)])
def test_top_eigenpairs_are_the_largest_of_the_lower_triangle_whatever_the_upper_holds(n, dim):
    """The dim largest eigenvalues, descending, and their eigenvectors of the symmetric matrix given by
    its lower triangle; the strict upper triangle is never read, even when it holds NaN (n = 1024 goes
    through the subset solver, n = 6 through the full one)."""
    axes = _householder(n, seed=n)
    values = np.random.default_rng(n).permutation(np.linspace(-2.0, 7.0, n))   # distinct, some negative
    full = (axes * values) @ axes.T                                              # eigenvectors = columns
    given = np.tril(full) + np.triu(np.full((n, n), np.nan), 1)
    got_values, got_vectors = _top_eigenpairs(torch.from_numpy(given), dim)
    order = np.argsort(values)[::-1][:dim]
    assert got_values.dtype == torch.float64 and got_vectors.shape == (n, dim)
    assert np.allclose(got_values.numpy(), values[order], rtol=0, atol=1e-10)
    _assert_columns_up_to_sign(got_vectors.numpy(), axes[:, order], tol=1e-9)


# --- co_pca_sizes: the exact method -----------------------------------------------------------------

@pytest.mark.parametrize("rows, cols, dtype", [
    (8, 9, torch.float64),         # rows < cols: from XXᵀ, projection = eigenvectors · √eigenvalues
    (16, 5, torch.float64),        # rows ≥ cols: from XᵀX, projection = X̃ · eigenvectors
    (1024, 1025, torch.float32),   # rows < cols at n = 1024: the subset eigensolver
    (1024, 1024, torch.float32),   # rows = cols at n = 1024: XᵀX and the subset eigensolver
])
def test_co_pca_sizes_projects_on_known_principal_axes(rows, cols, dtype):
    """Joint centring and projection on the top principal axes (PROTOCOL §3.1): tokens built with
    known axes come out as their known coordinates, per size, each axis up to its sign; variances
    as small as 0.01² (eigenvalue < 1) keep their scale."""
    scales = [3.0, 2.0, 0.5, 0.01] if dtype == torch.float64 else [3.0, 2.0, 0.5]
    tokens, projection, _ = _known_tokens(rows, cols, scales, seed=rows + cols)
    x = torch.from_numpy(tokens).to(dtype)
    split = rows // 2 - 1                                   # unequal halves: the split is by rows
    sizes = co_pca_sizes(x[:split], x[split:], (1, len(scales)))
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for d in (1, len(scales)):
        a, b = sizes[d]
        assert a.dtype == dtype and a.shape == (split, d) and b.shape == (rows - split, d)
        _assert_columns_up_to_sign(torch.cat([a, b]).numpy(), projection[:, :d], tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows, cols", [(8, 3), (4, 5)])
def test_co_pca_sizes_of_half_precision_tokens_is_computed_in_float32_and_returned_in_their_dtype(dtype, rows, cols):
    """Half-precision tokens come back in their dtype, as the float64 SVD of the same (rounded) values."""
    tokens, _, _ = _known_tokens(rows, cols, [3.0, 2.0], seed=5)
    x = torch.from_numpy(tokens).to(dtype)
    a, b = co_pca_sizes(x[:3], x[3:], (2,))[2]
    centred = x.double().numpy() - x.double().numpy().mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    assert a.dtype == dtype and b.dtype == dtype
    _assert_columns_up_to_sign(torch.cat([a, b]).double().numpy(), u[:, :2] * s[:2], tol=2e-2)


def test_float32_tokens_are_centred_on_their_exact_joint_mean():
    """The joint mean of float32 tokens is exact (PROTOCOL §3.1 step 2): 1e8, 1, −1e8, 1 average to 0.5,
    where a float32 running sum cancels to 1 and would give 0.25."""
    x = torch.tensor([[1e8], [1.0], [-1e8], [1.0]], dtype=torch.float32)
    a, b = co_pca_sizes(x[:2], x[2:], (1,))[1]
    projected = torch.cat([a, b])[:, 0]
    assert projected.dtype == torch.float32
    assert projected.abs().tolist() == [1e8, 0.5, 1e8, 0.5]            # 1e8 − 0.5 rounds back to 1e8


def test_float32_tokens_are_centred_in_float32_around_the_rounded_mean():
    """Float32 tokens are centred in float32: each minus the joint mean rounded to float32. 1 and 1 + 2⁻²³
    (adjacent floats) average to 1 + 2⁻²⁴, which rounds (to even) to 1: centred 0 and 2⁻²³, not ∓2⁻²⁴."""
    x = torch.tensor([[1.0], [1.0 + 2.0 ** -23]], dtype=torch.float32)
    a, b = co_pca_sizes(x[:1], x[1:], (1,))[1]
    assert [abs(a.item()), abs(b.item())] == [0.0, 2.0 ** -23]


# --- the randomised method (torch 1.13's pca_lowrank) ------------------------------------------------

@pytest.mark.parametrize("rows, cols, q", [
    (8, 6, 3),     # cols > q: 1.13 sketches the transpose
    (4, 6, 2),     # rows < cols: the transpose too
    (8, 3, 3),     # rows ≥ cols = q: the input itself (the only case where it does)
])
def test_lowrank_axes_of_uncentred_tokens_are_the_known_principal_axes(rows, cols, q):
    """pca_lowrank centres the columns itself (center=True): with rank q after centring the range
    finder is exact, so the q axes are the known ones, each up to its sign, whatever the offset."""
    scales = [4.0, 2.0, 1.0][:q]
    tokens, _, axes = _known_tokens(rows, cols, scales, seed=rows * cols)
    v = pca_lowrank_axes(torch.from_numpy(tokens), q, torch.Generator().manual_seed(0))
    assert v.shape == (cols, q) and v.dtype == torch.float64
    _assert_columns_up_to_sign(v.numpy(), axes.T, tol=1e-9)


def test_lowrank_axes_default_to_torch_1_13s_two_power_iterations():
    """Without niter, the axes are torch's range finder with niter = 2 from the same seed (the
    reference's pca_lowrank default), on tokens where more iterations would move them."""
    x = torch.randn(30, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = pca_lowrank_axes(x, 3, torch.Generator().manual_seed(4))
    a = x - x.mean(dim=0, keepdim=True)
    with torch.random.fork_rng(devices=[]):                        # torch's range finder draws globally
        torch.manual_seed(4)
        basis = get_approximate_basis(a.T, 3, niter=2)           # 1.13: cols > q sketches the transpose
        torch.manual_seed(4)
        three = get_approximate_basis(a.T, 3, niter=3)
    _, _, vh = torch.linalg.svd(a @ basis, full_matrices=False)
    expected = basis @ vh.mH
    assert torch.allclose(v @ v.T, expected @ expected.T, atol=1e-10)
    assert not torch.allclose(v @ v.T, three @ three.T, atol=1e-3)  # the iteration count is visible here


@pytest.mark.parametrize("rows, cols, q", [(8, 3, 3), (8, 6, 3)])
def test_lowrank_axes_draw_one_gaussian_from_the_given_generator_only(rows, cols, q):
    """One Gaussian of (C × q) when 1.13 sketches the input, (N × q) when it sketches the transpose,
    from the generator passed in; torch's global generator is left alone."""
    tokens, _, _ = _known_tokens(rows, cols, [4.0, 2.0, 1.0], seed=2)
    generator, expected = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    global_state = torch.get_rng_state()
    pca_lowrank_axes(torch.from_numpy(tokens), q, generator)
    torch.randn(rows if rows < cols or cols > q else cols, q, generator=expected, dtype=torch.float64)
    assert torch.equal(generator.get_state(), expected.get_state())
    assert torch.equal(torch.get_rng_state(), global_state)


@pytest.mark.parametrize("rows, cols, q", [(8, 3, 3), (8, 6, 3)])
def test_lowrank_axes_draw_on_the_tokens_device_not_torchs_default(rows, cols, q):
    """The Gaussian is drawn on the tokens' device: a different default device changes nothing."""
    x = torch.from_numpy(_known_tokens(rows, cols, [4.0, 2.0, 1.0], seed=3)[0])
    plain = pca_lowrank_axes(x, q, torch.Generator().manual_seed(2))
    with torch.device("meta"):
        elsewhere = pca_lowrank_axes(x, q, torch.Generator().manual_seed(2))
    assert elsewhere.device.type == "cpu" and torch.equal(elsewhere, plain)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_co_pca_lowrank_of_half_precision_tokens_is_computed_in_float32_and_returned_in_their_dtype(dtype):
    """Half-precision tokens are reduced in float32 and come back in their dtype; with q at the tokens'
    width (q = C) the randomised axes are exact: the float64 SVD of the same (rounded) values."""
    tokens, _, _ = _known_tokens(8, 6, [3.0, 2.0], seed=7)
    x = torch.from_numpy(tokens).to(dtype)
    centred = x.double().numpy() - x.double().numpy().mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    a, b = co_pca_lowrank(x[:3], x[3:], 6, torch.Generator().manual_seed(0))     # q = C: every axis
    assert a.dtype == dtype and b.dtype == dtype and a.shape == (3, 6)
    _assert_columns_up_to_sign(torch.cat([a, b]).double().numpy()[:, :2], u[:, :2] * s[:2], tol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="CUDA TEST NOT RUN: no CUDA device; the lowrank co-PCA's CUDA-generator path (AMBIG-17) "
                           "is checked only where torch sees a GPU")
def test_co_pca_lowrank_with_a_cuda_generator_takes_and_returns_cpu_tokens():
    """With a CUDA stream the tokens are moved to the generator's device for the draw and the
    projections come back on the CPU (AMBIG-17: the reference draws on CUDA)."""
    tokens, projection, _ = _known_tokens(8, 3, [3.0, 2.0, 1.0], seed=8)
    x = torch.from_numpy(tokens)
    a, b = co_pca_lowrank(x[:4], x[4:], 3, torch.Generator(device="cuda").manual_seed(0))
    assert a.device.type == "cpu" and b.device.type == "cpu"
    _assert_columns_up_to_sign(torch.cat([a, b]).numpy(), projection, tol=1e-9)


# --- combine (supp. Table 3) ------------------------------------------------------------------------

def test_combine_defaults_to_the_papers_concatenation_at_alpha_one_half():
    """Without a strategy or α, combine is (0.5·‖F_SD‖₂, 0.5·‖F_DINO‖₂) (PROTOCOL §5.1, §5.4)."""
    sd = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    dino = torch.tensor([[1.0, 0.0, 0.0], [0.0, 6.0, 8.0]])
    expected = torch.tensor([[0.3, 0.4, 0.5, 0.0, 0.0], [0.0, 0.5, 0.0, 0.3, 0.4]])
    assert torch.allclose(combine(sd, dino), expected, atol=1e-7)
