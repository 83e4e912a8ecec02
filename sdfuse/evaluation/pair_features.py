"""Pair features: cached features → co-PCA → descriptors → similarities, for every method of a table.

A :class:`Method` names one row of an ablation table (which SD layers, PCA size, α, fusion
strategy, exact or the reference's randomised co-PCA). All methods of a table are evaluated together
so that every pair loads its features once and computes one Gram product and eigendecomposition per
SD layer for every PCA size (PROTOCOL §14 "plan for the fast reproduction"). The keypoint
similarities of the methods built from SD layers and one DINOv2 block are combined from per-layer
dot products that every method of the pair shares (:meth:`PairFeatures.similarity`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..data.datasets.pairs import Pair
from ..errors import ConfigError
from ..features.cache import CachedExtractor
from ..features.projection import projection_descriptor
from ..protocol.dino_variants import BilateralFilter, filter_tokens, guide_image
from ..protocol.fusion import (SD_LAYER_ORDER, STRATEGIES, LowrankStream, as_maps, as_tokens, co_pca_sizes, combine,
                               l2_normalize, layer_on_grid)
from ..protocol.geometry import DINO_PATCH
from ..protocol.matching import keypoint_rows, similarity_rows

KINDS = ("SD", "DINO", "Fuse")
REFERENCE_SUM_BUG = {"sum_reference": "sum", "sum_normalized_reference": "sum_normalized"}
"""What the reference code's ``plus``/``plus_norm`` modes really compute (PROTOCOL §5.4, AMBIG-8):
the sum on the first pair of each category, raw concatenation + cosine on every later pair."""
CO_PCA = ("exact", "lowrank")
"""co-PCA solvers: the exact top-d eigendecomposition (default, PROTOCOL §3.1) or the reference's
randomised ``pca_lowrank`` with its seeding and call order (:class:`sdfuse.protocol.fusion.LowrankStream`)."""
EPS = 1e-12
"""The norm floor of :func:`sdfuse.protocol.fusion.l2_normalize`."""


class ImagePair(NamedTuple):
    """The two images of a pair: all that :func:`pair_features` reads (a :class:`Pair` has them too; a TSS
    sample, which has a flow instead of keypoints, is given as one)."""

    src_image: Path
    trg_image: Path


@dataclass(frozen=True)
class Method:
    """One matcher: SD alone, DINO alone, or their fusion (PROTOCOL §5).

    ``sd_layers`` is a subset of the paper's layers {2, 5, 8}; ``pca_dim`` the co-PCA size per
    layer (§3.1); ``alpha`` the weight on SD; ``fusion`` a strategy of
    :data:`sdfuse.protocol.fusion.STRATEGIES` or of :data:`REFERENCE_SUM_BUG`; ``dino_blocks`` the DINOv2
    blocks whose L2-normalised tokens are concatenated (one block: the raw tokens; Ensemble-ViT:
    (9, 11)); ``dino_filter`` a joint bilateral filter on the DINO map (Filter-ViT); ``reduction``
    "co-pca" (§3.1) or "projection" (ODISE's trained heads, §3.3, layers 2/5/8 only); ``co_pca``
    "exact" (default) or "lowrank", the reference's randomised PCA as one run seeded ``co_pca_seed``
    would compute it (AMBIG-17: its result depends on the seed and on the pairs before it).
    """

    kind: str
    sd_layers: tuple[int, ...] = (2, 5, 8)
    pca_dim: int = 256
    alpha: float = 0.5
    fusion: str = "concat_normalized"
    dino_blocks: tuple[int, ...] = (11,)
    dino_filter: BilateralFilter | None = None
    reduction: str = "co-pca"
    co_pca: str = "exact"
    co_pca_seed: int = 42

    def __post_init__(self) -> None:  # pragma: no mutate block  (input check)
        if self.kind not in KINDS:
            raise ConfigError(f"method kind must be one of {KINDS}, got {self.kind!r}")
        if self.pca_dim <= 0:
            raise ConfigError(f"pca_dim must be positive, got {self.pca_dim}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.fusion not in STRATEGIES and self.fusion not in REFERENCE_SUM_BUG:
            raise ConfigError(f"unknown fusion {self.fusion!r}")
        if not self.sd_layers or not set(self.sd_layers) <= {2, 5, 8}:
            raise ConfigError(f"sd_layers must be a non-empty subset of the paper's layers (2, 5, 8), got {self.sd_layers}")
        if self.reduction not in ("co-pca", "projection"):
            raise ConfigError(f"reduction must be 'co-pca' or 'projection', got {self.reduction!r}")
        if self.co_pca not in CO_PCA:
            raise ConfigError(f"co_pca must be one of {CO_PCA}, got {self.co_pca!r}")

    @property
    def uses_sd(self) -> bool:
        return self.kind != "DINO"

    @property
    def uses_dino(self) -> bool:
        return self.kind != "SD"

    @property
    def sd_reduction(self) -> tuple | None:
        """Which co-PCA result the method reads: ("exact", d), ("lowrank", d, seed), or None."""
        if not self.uses_sd or self.reduction != "co-pca":
            return None
        return ("exact", self.pca_dim) if self.co_pca == "exact" else ("lowrank", self.pca_dim, self.co_pca_seed)

    @property
    def combines_dot_products(self) -> bool:
        """Whether its cosine follows from per-layer dot products (SD co-PCA layers, one raw DINO block,
        the paper's normalised concatenation): see :meth:`PairFeatures.similarity`."""
        return (self.fusion == "concat_normalized" and self.dino_filter is None and len(self.dino_blocks) == 1
                and (not self.uses_sd or self.reduction == "co-pca"))


@dataclass
class PairFeatures:
    """Everything one pair's methods draw on: co-PCA'd SD maps per (layer, reduction) and DINO maps per block.

    ``sd_pca`` maps (layer, :attr:`Method.sd_reduction`) to the (source, target) (d, h, w) maps.
    """

    sd_pca: dict
    dino: dict
    grid: int
    first_in_category: bool = False
    guides: tuple[torch.Tensor, torch.Tensor] | None = None
    projected: tuple[dict, dict] | None = None
    _on_grid: dict = field(default_factory=dict, repr=False)
    _dots: dict = field(default_factory=dict, repr=False)

    def sd_on_grid(self, layer: int, reduction: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """One co-PCA'd layer on the G×G grid as (d, G²) source and target tokens, computed once."""
        key = (layer, reduction)
        if key not in self._on_grid:
            self._on_grid[key] = tuple(layer_on_grid(side, layer, self.grid).reshape(side.shape[0], -1)
                                       for side in self.sd_pca[key])
        return self._on_grid[key]

    def descriptors(self, method: Method) -> tuple[torch.Tensor, torch.Tensor]:
        """(G², D) source and target descriptors of ``method`` (PROTOCOL §3.1, §4, §5)."""
        out = []
        for side in (0, 1):
            sd = dino = None
            if method.uses_sd and method.reduction == "projection":
                sd = projection_descriptor(self.projected[side], self.grid)
            elif method.uses_sd:
                sd = torch.cat([self.sd_on_grid(layer, method.sd_reduction)[side]
                                for layer in SD_LAYER_ORDER if layer in method.sd_layers]).T
            if method.uses_dino:
                maps = [self.dino[b][side] for b in method.dino_blocks]
                if method.dino_filter is not None:
                    maps = [filter_tokens(m, self.guides[side], method.dino_filter) for m in maps]
                blocks = [m.reshape(m.shape[0], -1).T for m in maps]
                dino = blocks[0] if len(blocks) == 1 else torch.cat([l2_normalize(b) for b in blocks], dim=-1)
            if method.kind == "Fuse":
                strategy = method.fusion
                if strategy in REFERENCE_SUM_BUG:
                    strategy = REFERENCE_SUM_BUG[strategy] if self.first_in_category else "concat"
                out.append(combine(sd, dino, strategy, method.alpha))
            else:
                out.append(sd if method.kind == "SD" else dino)
        return out[0], out[1]

    def _dot(self, part: tuple, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float64 dot products (K, N) of the source tokens ``rows`` with every target token in one part
        of the descriptor (an SD layer or a DINO block), and both sides' squared norms; computed once."""
        key = (part, rows.tobytes())
        if key not in self._dots:
            if part[0] == "sd":
                src, trg = self.sd_on_grid(*part[1:])
            else:
                src, trg = (m.reshape(m.shape[0], -1) for m in self.dino[part[1]])
            query = src[:, torch.as_tensor(rows, dtype=torch.long)].double()
            target = trg.double()
            self._dots[key] = (query.T @ target, (query * query).sum(0), (target * target).sum(0))
        return self._dots[key]

    def _cosine_terms(self, parts: list[tuple], rows: np.ndarray):
        """Cosine (K, N) of the concatenated parts, and both sides' norms ÷ their floored norms (0 for a
        zero token, else 1), as :func:`sdfuse.protocol.fusion.l2_normalize` would make them."""
        dots = [self._dot(part, rows) for part in parts]
        dot = sum(d[0] for d in dots)
        norms = [sum(d[i] for d in dots).sqrt() for i in (1, 2)]
        floored = [n.clamp_min(EPS) for n in norms]
        return dot / floored[0][:, None] / floored[1][None, :], norms[0] / floored[0], norms[1] / floored[1]

    def similarity(self, method: Method, rows: np.ndarray) -> torch.Tensor:
        """Cosine similarity (K, N), float64, of the source tokens ``rows`` to every target token (PROTOCOL §6).

        Equal to :func:`sdfuse.protocol.matching.similarity_rows` on :meth:`descriptors`, to float64 rounding.
        For a method that :attr:`Method.combines_dot_products`, it is combined from float64 dot products
        per SD layer and DINO block shared by every method of the pair: with c_SD and c_DINO the cosines
        of the SD and DINO parts, the fused cosine is (α² c_SD + (1 − α)² c_DINO) / (‖f_s‖ ‖f_t‖), where
        ‖f‖² = α² + (1 − α)² for non-zero tokens (PROTOCOL §5.2). Other methods build their descriptors.
        """
        if not method.combines_dot_products:
            return similarity_rows(*self.descriptors(method), rows)
        sd = dino = None
        if method.uses_sd:
            layers = [("sd", layer, method.sd_reduction) for layer in SD_LAYER_ORDER if layer in method.sd_layers]
            sd = self._cosine_terms(layers, rows)
        if method.uses_dino:
            dino = self._cosine_terms([("dino", method.dino_blocks[0])], rows)
        if method.kind != "Fuse":
            return (sd if method.kind == "SD" else dino)[0]
        a, b = method.alpha ** 2, (1 - method.alpha) ** 2
        norm_src, norm_trg = ((a * sd[i] ** 2 + b * dino[i] ** 2).sqrt().clamp_min(EPS) for i in (1, 2))
        return (a * sd[0] + b * dino[0]) / norm_src[:, None] / norm_trg[None, :]


def _sd_needs(methods) -> dict[tuple, set[int]]:
    """SD layers each co-PCA reduction of ``methods`` is needed for."""
    needs: dict[tuple, set[int]] = {}
    for method in methods:
        if method.sd_reduction is not None:
            needs.setdefault(method.sd_reduction, set()).update(method.sd_layers)
    return needs


def lowrank_streams(methods, device: str = "cpu") -> dict[tuple, LowrankStream]:
    """One freshly seeded :class:`~sdfuse.protocol.fusion.LowrankStream` per (PCA size, seed) of the "lowrank"
    methods: each stands for one reference run, whose methods with the same size draw the same numbers."""
    return {reduction: LowrankStream(seed=reduction[2], device=device)
            for reduction in _sd_needs(methods) if reduction[0] == "lowrank"}


def pair_features(pair: Pair | ImagePair, methods: dict[object, Method], grid: int, sd: CachedExtractor | None,
                  dino: CachedExtractor | None, first_in_category: bool = False,
                  projection: CachedExtractor | None = None,
                  streams: dict[tuple, LowrankStream] | None = None) -> PairFeatures:
    """Load the pair's cached features and run each needed co-PCA once (PROTOCOL §3.1).

    Exact co-PCA: per layer one Gram product and eigendecomposition for every PCA size. "lowrank"
    methods draw from ``streams`` (from :func:`lowrank_streams`, carried from pair to pair in
    evaluation order); without it, fresh streams: the first pair of a run.
    """
    sd_pca: dict = {}
    needs = _sd_needs(methods.values())
    if needs:
        src_maps, trg_maps = sd.get(pair.src_image), sd.get(pair.trg_image)
        exact = {}
        for reduction, layers in needs.items():
            if reduction[0] == "exact":
                for layer in layers:
                    exact.setdefault(layer, set()).add(reduction[1])
        for layer, dims in exact.items():
            src, trg = src_maps[layer], trg_maps[layer]
            for dim, (a, b) in co_pca_sizes(as_tokens(src), as_tokens(trg), sorted(dims)).items():
                sd_pca[(layer, ("exact", dim))] = (as_maps(a, *src.shape[1:]), as_maps(b, *trg.shape[1:]))
        streams = streams if streams is not None else lowrank_streams(methods.values())
        for reduction, layers in needs.items():
            if reduction[0] == "lowrank":
                reduced = streams[reduction].pair(src_maps, trg_maps, reduction[1], layers)
                sd_pca.update({(layer, reduction): maps for layer, maps in reduced.items()})
    dino_maps = {}
    blocks = {b for m in methods.values() if m.uses_dino for b in m.dino_blocks}
    if blocks:
        src_d, trg_d = dino.get(pair.src_image), dino.get(pair.trg_image)
        dino_maps = {block: (src_d[block], trg_d[block]) for block in blocks}
    guides = None
    if any(m.dino_filter is not None for m in methods.values()):
        guides = (guide_image(pair.src_image, grid), guide_image(pair.trg_image, grid))
    projected = None
    if any(m.uses_sd and m.reduction == "projection" for m in methods.values()):
        if projection is None:
            raise ConfigError("the projection reduction needs the ODISE checkpoint: pass captioner_checkpoint=...")
        projected = (projection.get(pair.src_image), projection.get(pair.trg_image))
    return PairFeatures(sd_pca, dino_maps, grid, first_in_category, guides, projected)


def pair_keypoints(pair: Pair, grid: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Target keypoints in the DINO frame, source token rows, threshold and kp ids (PROTOCOL §1.2, §6)."""
    frame = DINO_PATCH * grid
    src_kps, trg_kps, threshold = pair.in_frame(frame)
    ids = np.asarray(pair.kp_ids)[pair.visible] if pair.kp_ids else np.flatnonzero(pair.visible)
    return trg_kps, keypoint_rows(src_kps, grid, frame), threshold, ids
