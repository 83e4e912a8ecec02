"""co-PCA of SD layers, assembly to the descriptor grid, and SD + DINO fusion (PROTOCOL §3, §5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

SD_LAYER_ORDER = (8, 5, 2)
"""Channel order of the assembled SD descriptor: layer 8 | layer 5 | layer 2 (PROTOCOL §3.1)."""


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, float32 for every other dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def as_tokens(maps: torch.Tensor) -> torch.Tensor:
    """(C, h, w) map → (h·w, C) tokens, row-major."""
    return maps.reshape(maps.shape[0], -1).T


def as_maps(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h·w, C) row-major tokens → (C, h, w) map."""
    return tokens.T.reshape(-1, h, w)


def _gram(x: torch.Tensor, outer: bool) -> torch.Tensor:
    """XXᵀ (``outer``) or XᵀX of a float32/float64 matrix as a symmetric rank-k update (BLAS ``syrk``):
    half the flops of a general product. Only the lower triangle is filled."""
    from scipy.linalg import blas

    syrk = blas.ssyrk if x.dtype == torch.float32 else blas.dsyrk
    # x.T is x's memory read in Fortran order, which BLAS takes without a copy: A = Xᵀ
    return torch.from_numpy(syrk(1.0, x.T.numpy(), trans=1 if outer else 0, lower=1))


def _top_eigenpairs(gram: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``dim`` largest eigenvalues (descending) and eigenvectors of a symmetric matrix given by its
    lower triangle, in float64.

    A large matrix of which only a small top part is needed (n ≥ 1024, dim ≤ n/3: SD layers 2 and 5
    at 1280 channels) goes through LAPACK's subset solver (``dsyevr``), which skips most of the
    back-transformation; anything else through the full ``eigh``. Both are exact to float64.
    """
    n = gram.shape[0]
    gram = gram.double()
    if n >= 1024 and 3 * dim <= n:
        import scipy.linalg

        values, vectors = scipy.linalg.eigh(gram.numpy(), lower=True, subset_by_index=[n - dim, n - 1],
                                            driver="evr", check_finite=False)
        values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
    else:
        values, vectors = torch.linalg.eigh(gram, UPLO="L")
    top = values.argsort(descending=True)[:dim]
    return values[top], vectors[:, top]


def co_pca_sizes(src: torch.Tensor, trg: torch.Tensor, dims) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Joint PCA of two token sets to each size in ``dims`` at once (PROTOCOL §3.1).

    ``src`` (N1, C) and ``trg`` (N2, C) are stacked, centred by their joint mean (no scaling, no
    whitening) and projected on the top principal axes of the stacked matrix X, computed exactly from
    the smaller Gram matrix (XᵀX or XXᵀ, as a symmetric rank-k update) by a float64 eigendecomposition;
    the reference's randomized ``pca_lowrank`` only approximates this subspace (see
    :func:`co_pca_lowrank`). One Gram product and one eigensolve serve every size: the top-d axes are
    the first d of the top-max(dims) axes, so each size's projection is a slice of the largest. Each d
    is capped at min(N1 + N2, C). Float64 inputs are processed in float64 throughout; any other dtype
    is centred, multiplied and projected in float32 around a mean taken in float64 (rounded to float32,
    it moves every token by at most half an ulp of the mean, the size of rounding the tokens
    themselves), only the eigensolver runs in float64 (in float32 it moves some nearest neighbours):
    within float32 tolerance of the all-float64 computation at a fraction of its cost. Returns
    {d: (N1, d) and (N2, d)} in the input dtype.
    """
    work = _work_dtype(src)
    stacked = torch.cat([src, trg]).to(work)
    centred = stacked.sub_(stacked.mean(dim=0, keepdim=True, dtype=torch.float64).to(work))
    rows, cols = centred.shape
    top = min(max(dims), rows, cols)
    if rows < cols:
        eigvals, eigvecs = _top_eigenpairs(_gram(centred, outer=True), top)
        projected = eigvecs * eigvals.clamp_min(0).sqrt()
    else:
        _, eigvecs = _top_eigenpairs(_gram(centred, outer=False), top)
        projected = centred @ eigvecs.to(work)
    projected = projected.to(src.dtype)
    return {d: (projected[: len(src), : min(d, top)], projected[len(src):, : min(d, top)]) for d in dims}


def co_pca(src: torch.Tensor, trg: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint PCA of two token sets to ``dim`` dimensions (PROTOCOL §3.1); see :func:`co_pca_sizes`.

    Returns the projected (N1, d) and (N2, d) in the input dtype.
    """
    return co_pca_sizes(src, trg, (dim,))[dim]


def co_pca_layers(src: dict[int, torch.Tensor], trg: dict[int, torch.Tensor],
                  dims: dict[int, int]) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """co-PCA of each SD layer separately: (C, h, w) maps → (d, h, w) maps (PROTOCOL §3.1)."""
    out_src, out_trg = {}, {}
    for layer, dim in dims.items():
        a, b = co_pca(as_tokens(src[layer]), as_tokens(trg[layer]), dim)
        out_src[layer], out_trg[layer] = as_maps(a, *src[layer].shape[1:]), as_maps(b, *trg[layer].shape[1:])
    return out_src, out_trg


REFERENCE_LAYER_ORDER = (2, 5, 8)
"""The order in which the reference's ``co_pca`` reduces the layers (s5, s4, s3 = paper layers 2, 5,
8), hence the order of its random draws within a pair (PROTOCOL §3.1)."""


def _approximate_basis(a: torch.Tensor, q: int, niter: int, generator: torch.Generator) -> torch.Tensor:
    """Halko et al.'s randomized range finder (their Algorithm 4.4) with ``niter`` power iterations:
    q orthonormal columns spanning approximately the range of ``a``; one Gaussian draw of
    (columns of a) × q from ``generator``."""
    sketch = torch.randn(a.shape[-1], q, generator=generator, dtype=a.dtype, device=a.device)
    basis = torch.linalg.qr(a @ sketch).Q
    for _ in range(niter):
        basis = torch.linalg.qr(a.mH @ basis).Q
        basis = torch.linalg.qr(a @ basis).Q
    return basis


def _sketches_transpose(rows: int, cols: int, q: int) -> bool:
    """Whether torch 1.13's ``svd_lowrank`` works on the transpose of a rows × cols input (rows < cols
    or cols > q); its Gaussian draw then has ``rows`` rows, otherwise ``cols``."""
    return rows < cols or cols > q


def pca_lowrank_axes(x: torch.Tensor, q: int, generator: torch.Generator, niter: int = 2) -> torch.Tensor:
    """The principal axes V (C, q) that ``torch.pca_lowrank(x, q, center=True, niter)`` returns under
    torch 1.13.1, the version the reference pins, drawing from ``generator`` instead of the global RNG.

    torch 1.13's ``svd_lowrank`` sketches the transpose whenever rows < cols *or* cols > q (every SD
    layer at G = 60), while torch ≥ 2.4 sketches the transpose only when rows < cols; the two draw
    matrices of different shapes, so for layers 5 and 8 today's ``torch.pca_lowrank`` no longer gives
    the reference's axes, nor consumes the random stream as it did. This function keeps 1.13's rule.
    """
    a = x - x.mean(dim=-2, keepdim=True)
    if _sketches_transpose(*a.shape, q):
        basis = _approximate_basis(a.mH, q, niter, generator)
        _, _, vh = torch.linalg.svd(a @ basis, full_matrices=False)
        return basis @ vh.mH
    basis = _approximate_basis(a, q, niter, generator)
    _, _, vh = torch.linalg.svd((a.mH @ basis).mH, full_matrices=False)
    return vh.mH


def co_pca_lowrank(src: torch.Tensor, trg: torch.Tensor, dim: int, generator: torch.Generator,
                   niter: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's randomised co-PCA of one layer (PROTOCOL §3.1, AMBIG-17 "Randomness").

    As ``co_pca`` in the released ``utils_correspondence.py``: stack source over target, subtract the
    joint mean (in the feature dtype, float32), take ``pca_lowrank(q=dim, niter=2)`` of the centred
    stack (which centres once more) and project the centred stack on the q axes. The random draw comes
    from ``generator`` (see :func:`pca_lowrank_axes`); ``dim`` is capped at min(N1 + N2, C), where
    the reference would stop with an error. Float64 inputs stay float64, others are computed in float32.
    """
    stacked = torch.cat([src, trg]).to(device=generator.device, dtype=_work_dtype(src))
    centred = stacked - stacked.mean(dim=0, keepdim=True)
    q = min(dim, *centred.shape)
    projected = (centred @ pca_lowrank_axes(centred, q, generator, niter)).to(device="cpu", dtype=src.dtype)
    return projected[: len(src)], projected[len(src):]


class LowrankStream:
    """One run of the reference's randomised co-PCA: its random stream and the order it is drawn in.

    The reference seeds the global RNGs once per run (``torch.manual_seed(42)`` in ``main``), then for
    every pair in evaluation order reduces layers 2, 5 and 8 in that order (:data:`REFERENCE_LAYER_ORDER`)
    with one Gaussian draw each, for every method that uses SD (a layer subset only zeroes the other
    layers' weights afterwards, so all three are drawn). A stream is a generator seeded once and
    consumed in exactly that order: :meth:`pair` draws for all three layers and computes the ones asked
    for. The reference runs on CUDA, where nothing else draws from the CUDA generator between these
    calls [INFERRED]; with ``device="cuda"`` the draws come from the CUDA generator as there (bitwise
    equal random matrices need the same GPU model and CUDA kernels), on the CPU from torch's CPU
    generator: the same algorithm and seeding, other random numbers.
    """

    def __init__(self, seed: int = 42, niter: int = 2, device: str = "cpu"):
        self.seed, self.niter = seed, niter
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def pair(self, src: dict[int, torch.Tensor], trg: dict[int, torch.Tensor], dim: int,
             layers) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The next pair's (d, h, w) source and target maps of ``layers`` (consuming all three draws)."""
        out = {}
        for layer in REFERENCE_LAYER_ORDER:
            if layer not in src:
                continue
            if layer in layers:
                a, b = co_pca_lowrank(as_tokens(src[layer]), as_tokens(trg[layer]), dim, self.generator, self.niter)
                out[layer] = (as_maps(a, *src[layer].shape[1:]), as_maps(b, *trg[layer].shape[1:]))
            else:                      # not needed: draw what the reference draws, and drop it
                channels = src[layer].shape[0]
                rows = src[layer][0].numel() + trg[layer][0].numel()
                q = min(dim, rows, channels)
                torch.randn(rows if _sketches_transpose(rows, channels, q) else channels, q,
                            generator=self.generator, device=self.generator.device, dtype=_work_dtype(src[layer]))
        return out


def _bilinear(x: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(x[None], size=(side, side), mode="bilinear", align_corners=False)[0]


def layer_on_grid(maps: torch.Tensor, layer: int, grid: int) -> torch.Tensor:
    """One SD layer's (d, h, w) map brought to the G×G grid as the assembly does (PROTOCOL §3.1).

    Layer 8 is already at G; layer 5 (G/2) is resized bilinearly to G; layer 2 (G/4) is resized
    bilinearly to G/2 and then to G. Bilinear resizing treats every channel alone, so resizing a
    concatenation equals concatenating the resized layers: the assembly can be done layer by layer.
    """
    if layer == 8:
        return maps
    if layer == 2:
        maps = _bilinear(maps, grid // 2)
    return _bilinear(maps, grid)


def assemble_sd(maps: dict[int, torch.Tensor], layers: tuple[int, ...], grid: int) -> torch.Tensor:
    """Concatenate the chosen SD layers on the G×G grid as (G², D) tokens, row-major (PROTOCOL §3.1).

    Layer 2 (G/4) is resized bilinearly to G/2 and joined *after* layer 5 (G/2); that block is
    resized bilinearly to G and joined after layer 8 (G): [8 | 5 | 2↑↑]. Layer 2 therefore reaches
    G in two bilinear steps (:func:`layer_on_grid`). A subset keeps the same order and steps for the
    layers it has.
    """
    unknown = set(layers) - set(SD_LAYER_ORDER)
    if unknown or not layers:
        raise ConfigError(f"SD layer subset must be non-empty within {SD_LAYER_ORDER}, got {layers}")
    desc = torch.cat([layer_on_grid(maps[layer], layer, grid) for layer in SD_LAYER_ORDER if layer in layers])
    return desc.reshape(desc.shape[0], -1).T


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-descriptor (row) L2 normalisation."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def fuse(sd: torch.Tensor, dino: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """The paper's fusion (α‖F_SD‖₂, (1 − α)‖F_DINO‖₂) of (N, D_sd) and (N, D_dino) tokens (PROTOCOL §5.1–5.2).

    Every fused token has norm √(α² + (1 − α)²), so nearest neighbours by L2 (the reference) and by
    cosine coincide, and the effective mixing is α² : (1 − α)² (AMBIG-6).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"fusion weight alpha must be in [0, 1], got {alpha}")
    return torch.cat([alpha * l2_normalize(sd), (1 - alpha) * l2_normalize(dino)], dim=-1)


STRATEGIES = ("concat_normalized", "concat", "sum", "sum_normalized")
"""Supp. Table 3's fusion strategies, as the intended operations (PROTOCOL §5.4, AMBIG-8)."""


def combine(sd: torch.Tensor, dino: torch.Tensor, strategy: str = "concat_normalized", alpha: float = 0.5) -> torch.Tensor:
    """Fuse (N, D_sd) and (N, D_dino) tokens by one of supp. Table 3's strategies (PROTOCOL §5.4).

    ``concat_normalized`` is the paper's (α‖F_SD‖, (1 − α)‖F_DINO‖); ``concat`` is (F_SD, F_DINO)
    raw; ``sum`` is F_SD + F_DINO and ``sum_normalized`` ‖F_SD‖ + ‖F_DINO‖, which need D_sd = D_dino.
    All are matched by cosine similarity.
    """
    if strategy == "concat_normalized":
        return fuse(sd, dino, alpha)
    if strategy == "concat":
        return torch.cat([sd, dino], dim=-1)
    if strategy in ("sum", "sum_normalized"):
        if sd.shape[-1] != dino.shape[-1]:
            raise ConfigError(f"'{strategy}' fusion needs equal SD and DINO sizes, got {sd.shape[-1]} and "
                              f"{dino.shape[-1]}; choose the co-PCA size so that 3·d equals the DINO width")
        return sd + dino if strategy == "sum" else l2_normalize(sd) + l2_normalize(dino)
    raise ConfigError(f"unknown fusion strategy {strategy!r}; choose from {STRATEGIES}")
