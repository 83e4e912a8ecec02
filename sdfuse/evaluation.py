"""Per-pair evaluation: cached features → co-PCA → descriptors → NN matching → keypoint records.

A :class:`Method` names one row of an ablation table (which SD layers, PCA size, α). All methods
of a table are evaluated together so that every pair loads its features once and runs each
co-PCA once (PROTOCOL §14 "plan for the fast reproduction").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .datasets.pairs import Pair
from .errors import ConfigError
from .features.cache import CachedExtractor
from .fusion import assemble_sd, co_pca_layers, fuse
from .geometry import DINO_PATCH
from .matching import match_keypoints

KINDS = ("SD", "DINO", "Fuse")


@dataclass(frozen=True)
class Method:
    """One matcher: SD alone, DINO alone, or their fusion (PROTOCOL §5.2).

    ``sd_layers`` is a subset of the paper's layers {2, 5, 8}; ``pca_dim`` the co-PCA size per
    layer (§3.1); ``alpha`` the weight on SD in the fusion; ``dino_block`` the DINOv2 block.
    """

    kind: str
    sd_layers: tuple[int, ...] = (2, 5, 8)
    pca_dim: int = 256
    alpha: float = 0.5
    dino_block: int = 11

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"method kind must be one of {KINDS}, got {self.kind!r}")
        if self.pca_dim <= 0:
            raise ConfigError(f"pca_dim must be positive, got {self.pca_dim}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def uses_sd(self) -> bool:
        return self.kind != "DINO"

    @property
    def uses_dino(self) -> bool:
        return self.kind != "SD"


def pair_descriptors(method: Method, sd_pca: dict, dino: tuple[torch.Tensor, torch.Tensor] | None,
                     grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(G², D) source and target descriptors of ``method`` from co-PCA'd SD maps and DINO maps."""
    descs = []
    for side in (0, 1):
        parts = {}
        if method.uses_sd:
            maps = {layer: sd_pca[(layer, method.pca_dim)][side] for layer in method.sd_layers}
            parts["SD"] = assemble_sd(maps, method.sd_layers, grid)
        if method.uses_dino:
            tokens = dino[side]
            parts["DINO"] = tokens.reshape(tokens.shape[0], -1).T
        if method.kind == "Fuse":
            descs.append(fuse(parts["SD"], parts["DINO"], method.alpha))
        else:
            descs.append(parts[method.kind])
    return descs[0], descs[1]


def evaluate(pairs: list[Pair], methods: dict[str, Method], grid: int,
             sd: CachedExtractor | None, dino: CachedExtractor | None, progress: bool = True) -> pd.DataFrame:
    """Keypoint records (PROTOCOL §7.1) of every method on every pair.

    Columns: method (the key in ``methods``), pair (position in ``pairs``), pair_id, category,
    kp_id, error and threshold (DINO-frame pixels), pred_x/pred_y and gt_x/gt_y. A pair listed
    twice (sampling with replacement) is computed once and recorded twice.
    """
    frame = DINO_PATCH * grid
    records = []
    done: dict[str, list[dict]] = {}
    for position, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        if pair.pair_id not in done:
            done[pair.pair_id] = _evaluate_pair(pair, methods, grid, frame, sd, dino)
        records += [{**row, "pair": position} for row in done[pair.pair_id]]
    return pd.DataFrame(records)


def _evaluate_pair(pair: Pair, methods: dict[str, Method], grid: int, frame: int,
                   sd: CachedExtractor | None, dino: CachedExtractor | None) -> list[dict]:
    src_kps, trg_kps, threshold = pair.in_frame(frame)
    sd_pca: dict = {}
    needs = {(layer, m.pca_dim) for m in methods.values() if m.uses_sd for layer in m.sd_layers}
    if needs:
        src_maps, trg_maps = sd.get(pair.src_image), sd.get(pair.trg_image)
        for dim in sorted({d for _, d in needs}):
            layers = {layer: dim for layer, d in needs if d == dim}
            a, b = co_pca_layers(src_maps, trg_maps, layers)
            sd_pca.update({(layer, dim): (a[layer], b[layer]) for layer in layers})
    dino_maps = {}
    if any(m.uses_dino for m in methods.values()):
        src_d, trg_d = dino.get(pair.src_image), dino.get(pair.trg_image)
        dino_maps = {block: (src_d[block], trg_d[block]) for block in {m.dino_block for m in methods.values()}}
    ids = np.asarray(pair.kp_ids)[pair.visible] if pair.kp_ids else np.flatnonzero(pair.visible)
    rows = []
    for name, method in methods.items():
        src_desc, trg_desc = pair_descriptors(method, sd_pca, dino_maps.get(method.dino_block), grid)
        pred = match_keypoints(src_desc, trg_desc, src_kps, grid, frame)
        error = np.linalg.norm(pred - trg_kps, axis=1)
        for k in range(len(error)):
            rows.append({"method": name, "pair_id": pair.pair_id, "category": pair.category, "kp_id": int(ids[k]),
                         "error": float(error[k]), "threshold": threshold,
                         "pred_x": pred[k, 0], "pred_y": pred[k, 1], "gt_x": trg_kps[k, 0], "gt_y": trg_kps[k, 1]})
    return rows
