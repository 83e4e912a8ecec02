"""co-PCA of SD layers, assembly to the descriptor grid, and SD + DINO fusion (PROTOCOL §3, §5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ConfigError

SD_LAYER_ORDER = (8, 5, 2)
"""Channel order of the assembled SD descriptor: layer 8 | layer 5 | layer 2 (PROTOCOL §3.1)."""


def _top_eigenpairs(gram: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``dim`` largest eigenvalues (descending) and eigenvectors of a symmetric matrix, in float64.

    A large matrix of which only a small top part is needed (n ≥ 1024, dim ≤ n/4: SD layers 2 and 5
    at 1280 channels) goes through LAPACK's subset solver (``dsyevr``), which skips most of the
    back-transformation; anything else through the full ``eigh``. Both are exact to float64.
    """
    n = gram.shape[0]
    gram = gram.double()
    if n >= 1024 and 4 * dim <= n:
        import scipy.linalg

        values, vectors = scipy.linalg.eigh(gram.numpy(), subset_by_index=[n - dim, n - 1], driver="evr",
                                            check_finite=False)
        values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
    else:
        values, vectors = torch.linalg.eigh(gram)
    top = values.argsort(descending=True)[:dim]
    return values[top], vectors[:, top]


def co_pca(src: torch.Tensor, trg: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint PCA of two token sets (PROTOCOL §3.1).

    ``src`` (N1, C) and ``trg`` (N2, C) are stacked, centred by their joint mean (no scaling, no
    whitening) and projected on the top-``dim`` principal axes of the stacked matrix X, computed
    exactly from the smaller Gram matrix (XᵀX or XXᵀ) by a float64 eigendecomposition; the
    reference's randomized ``pca_lowrank`` only approximates this subspace. ``dim`` is capped at
    min(N1 + N2, C). Float64 inputs are processed in float64 throughout; any other dtype has its
    Gram product and projection in float32 (the mean is still taken in float64), which keeps the
    result within float32 tolerance of the all-float64 computation at a fraction of its cost.
    Returns the projected (N1, d) and (N2, d) in the input dtype.
    """
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    stacked = torch.cat([src, trg]).double()
    centred = (stacked - stacked.mean(dim=0, keepdim=True)).to(work)
    rows, cols = centred.shape
    dim = min(dim, rows, cols)
    if rows < cols:
        eigvals, eigvecs = _top_eigenpairs(centred @ centred.T, dim)
        projected = eigvecs * eigvals.clamp_min(0).sqrt()
    else:
        _, eigvecs = _top_eigenpairs(centred.T @ centred, dim)
        projected = centred @ eigvecs.to(work)
    projected = projected.to(src.dtype)
    return projected[: len(src)], projected[len(src):]


def co_pca_layers(src: dict[int, torch.Tensor], trg: dict[int, torch.Tensor],
                  dims: dict[int, int]) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """co-PCA of each SD layer separately: (C, h, w) maps → (d, h, w) maps (PROTOCOL §3.1)."""
    out_src, out_trg = {}, {}
    for layer, dim in dims.items():
        channels, h, w = src[layer].shape
        a, b = co_pca(src[layer].reshape(channels, -1).T, trg[layer].reshape(channels, -1).T, dim)
        out_src[layer] = a.T.reshape(-1, h, w)
        out_trg[layer] = b.T.reshape(-1, h, w)
    return out_src, out_trg


def _bilinear(x: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(x[None], size=(side, side), mode="bilinear", align_corners=False)[0]


def assemble_sd(maps: dict[int, torch.Tensor], layers: tuple[int, ...], grid: int) -> torch.Tensor:
    """Concatenate the chosen SD layers on the G×G grid as (G², D) tokens, row-major (PROTOCOL §3.1).

    Layer 2 (G/4) is resized bilinearly to G/2 and joined *after* layer 5 (G/2); that block is
    resized bilinearly to G and joined after layer 8 (G): [8 | 5 | 2↑↑]. Layer 2 therefore reaches
    G in two bilinear steps. A subset keeps the same order and steps for the layers it has.
    """
    unknown = set(layers) - set(SD_LAYER_ORDER)
    if unknown or not layers:
        raise ConfigError(f"SD layer subset must be non-empty within {SD_LAYER_ORDER}, got {layers}")
    half = []
    if 5 in layers:
        half.append(maps[5])
    if 2 in layers:
        half.append(_bilinear(maps[2], grid // 2))
    parts = [maps[8]] if 8 in layers else []
    if half:
        parts.append(_bilinear(torch.cat(half), grid))
    desc = torch.cat(parts)
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
