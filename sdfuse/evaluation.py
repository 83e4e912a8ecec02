"""Per-pair evaluation: cached features → co-PCA → descriptors → NN matching → keypoint records.

A :class:`Method` names one row of an ablation table (which SD layers, PCA size, α, fusion
strategy). All methods of a table are evaluated together so that every pair loads its features
once and runs each co-PCA once (PROTOCOL §14 "plan for the fast reproduction").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .datasets.pairs import Pair
from .dino_variants import BilateralFilter, filter_tokens, guide_image
from .errors import ConfigError
from .features.cache import CachedExtractor
from .features.projection import projection_descriptor
from .fusion import STRATEGIES, assemble_sd, co_pca_layers, combine, l2_normalize
from .geometry import DINO_PATCH
from .matching import index_to_pixel, keypoint_rows, similarity_rows

KINDS = ("SD", "DINO", "Fuse")
REFERENCE_SUM_BUG = {"sum_reference": "sum", "sum_normalized_reference": "sum_normalized"}
"""What the reference code's ``plus``/``plus_norm`` modes really compute (PROTOCOL §5.4, AMBIG-8):
the sum on the first pair of each category, raw concatenation + cosine on every later pair."""


@dataclass(frozen=True)
class Method:
    """One matcher: SD alone, DINO alone, or their fusion (PROTOCOL §5).

    ``sd_layers`` is a subset of the paper's layers {2, 5, 8}; ``pca_dim`` the co-PCA size per
    layer (§3.1); ``alpha`` the weight on SD; ``fusion`` a strategy of
    :data:`sdfuse.fusion.STRATEGIES` or of :data:`REFERENCE_SUM_BUG`; ``dino_blocks`` the DINOv2
    blocks whose L2-normalised tokens are concatenated (one block: the raw tokens; Ensemble-ViT:
    (9, 11)); ``dino_filter`` a joint bilateral filter on the DINO map (Filter-ViT); ``reduction``
    "co-pca" (§3.1) or "projection" (ODISE's trained heads, §3.3, layers 2/5/8 only).
    """

    kind: str
    sd_layers: tuple[int, ...] = (2, 5, 8)
    pca_dim: int = 256
    alpha: float = 0.5
    fusion: str = "concat_normalized"
    dino_blocks: tuple[int, ...] = (11,)
    dino_filter: BilateralFilter | None = None
    reduction: str = "co-pca"

    def __post_init__(self) -> None:
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

    @property
    def uses_sd(self) -> bool:
        return self.kind != "DINO"

    @property
    def uses_dino(self) -> bool:
        return self.kind != "SD"


@dataclass
class PairFeatures:
    """Everything one pair's methods draw on: co-PCA'd SD maps per (layer, dim) and DINO maps per block."""

    sd_pca: dict
    dino: dict
    grid: int
    first_in_category: bool = False
    guides: tuple[torch.Tensor, torch.Tensor] | None = None
    projected: tuple[dict, dict] | None = None

    def descriptors(self, method: Method) -> tuple[torch.Tensor, torch.Tensor]:
        """(G², D) source and target descriptors of ``method`` (PROTOCOL §3.1, §4, §5)."""
        out = []
        for side in (0, 1):
            sd = dino = None
            if method.uses_sd and method.reduction == "projection":
                sd = projection_descriptor(self.projected[side], self.grid)
            elif method.uses_sd:
                maps = {layer: self.sd_pca[(layer, method.pca_dim)][side] for layer in method.sd_layers}
                sd = assemble_sd(maps, method.sd_layers, self.grid)
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


def pair_features(pair: Pair, methods: dict[object, Method], grid: int, sd: CachedExtractor | None,
                  dino: CachedExtractor | None, first_in_category: bool = False,
                  projection: CachedExtractor | None = None) -> PairFeatures:
    """Load the pair's cached features and run each needed co-PCA once (PROTOCOL §3.1)."""
    sd_pca: dict = {}
    needs = {(layer, m.pca_dim) for m in methods.values() if m.uses_sd and m.reduction == "co-pca"
             for layer in m.sd_layers}
    if needs:
        src_maps, trg_maps = sd.get(pair.src_image), sd.get(pair.trg_image)
        for dim in sorted({d for _, d in needs}):
            layers = {layer: dim for layer, d in needs if d == dim}
            a, b = co_pca_layers(src_maps, trg_maps, layers)
            sd_pca.update({(layer, dim): (a[layer], b[layer]) for layer in layers})
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


def _first_positions(pairs: list[Pair]) -> set[int]:
    seen, first = set(), set()
    for position, pair in enumerate(pairs):
        if pair.category not in seen:
            seen.add(pair.category)
            first.add(position)
    return first


def evaluate(pairs: list[Pair], methods: dict[str, Method], grid: int, sd: CachedExtractor | None,
             dino: CachedExtractor | None, progress: bool = True,
             projection: CachedExtractor | None = None) -> pd.DataFrame:
    """Keypoint records (PROTOCOL §7.1) of every method on every pair.

    Columns: method (the key in ``methods``), pair (position in ``pairs``), pair_id, category,
    kp (position within the pair), kp_id, error and threshold (DINO-frame pixels), pred_index
    (matched target token), pred_x/pred_y and gt_x/gt_y. A pair listed twice (sampling with
    replacement) is computed once and recorded twice.
    """
    first = _first_positions(pairs)
    records, done = [], {}
    for position, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        key = (pair.pair_id, position in first)
        if key not in done:
            done[key] = _evaluate_pair(pair, methods, grid, sd, dino, position in first, projection)
        records += [{**row, "pair": position} for row in done[key]]
    return pd.DataFrame(records)


def _evaluate_pair(pair: Pair, methods: dict[str, Method], grid: int, sd, dino, first: bool,
                   projection) -> list[dict]:
    features = pair_features(pair, methods, grid, sd, dino, first, projection)
    trg_kps, rows, threshold, ids = pair_keypoints(pair, grid)
    out = []
    for name, method in methods.items():
        found = similarity_rows(*features.descriptors(method), rows).argmax(dim=1).numpy()
        pred = index_to_pixel(found, grid)
        error = np.linalg.norm(pred - trg_kps, axis=1)
        for k in range(len(error)):
            out.append({"method": name, "pair_id": pair.pair_id, "category": pair.category, "kp": k,
                        "kp_id": int(ids[k]), "error": float(error[k]), "threshold": threshold,
                        "pred_index": int(found[k]), "pred_x": pred[k, 0], "pred_y": pred[k, 1],
                        "gt_x": trg_kps[k, 0], "gt_y": trg_kps[k, 1]})
    return out
