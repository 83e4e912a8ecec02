"""Keypoint evaluation: pair features → NN matching at the keypoint rows → keypoint records (PROTOCOL §6, §7).

The records (one row per evaluated keypoint, per method) are what :mod:`sdfuse.protocol.metrics`
turns into PCK; :func:`evaluate` computes them for every method of a table in one pass over the pairs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.datasets.pairs import Pair
from ..features.cache import CachedExtractor
from ..protocol.matching import index_to_pixel
from .pair_features import Method, lowrank_streams, pair_features, pair_keypoints


def _first_positions(pairs: list[Pair]) -> set[int]:
    seen, first = set(), set()
    for position, pair in enumerate(pairs):
        if pair.category not in seen:
            seen.add(pair.category)
            first.add(position)
    return first


def evaluate(pairs: list[Pair], methods: dict[str, Method], grid: int, sd: CachedExtractor | None,
             dino: CachedExtractor | None, progress: bool = True,
             projection: CachedExtractor | None = None, co_pca_device: str = "cpu") -> pd.DataFrame:
    """Keypoint records (PROTOCOL §7.1) of every method on every pair.

    Columns: method (the key in ``methods``), pair (position in ``pairs``), pair_id, category,
    kp (position within the pair), kp_id, error and threshold (DINO-frame pixels), pred_index
    (matched target token), pred_x/pred_y and gt_x/gt_y. A pair listed twice (sampling with
    replacement) is computed once and recorded twice, unless a method uses the "lowrank" co-PCA:
    the reference draws new random numbers for every pair it evaluates, so then every position is
    computed, in order. One call is one reference run: its "lowrank" streams are seeded once, at the
    start, and draw on ``co_pca_device`` ("cpu", or "cuda" as the reference).
    """
    first = _first_positions(pairs)
    streams = lowrank_streams(methods.values(), co_pca_device)
    records, done = [], {}
    for position, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):  # pragma: no mutate  (progress bar)
        key = (pair.pair_id, position in first) if not streams else position
        if key not in done:
            done[key] = _evaluate_pair(pair, methods, grid, sd, dino, position in first, projection, streams)
        records += [{**row, "pair": position} for row in done[key]]
    return pd.DataFrame(records)


def _evaluate_pair(pair: Pair, methods: dict[str, Method], grid: int, sd, dino, first: bool,
                   projection, streams: dict | None = None) -> list[dict]:
    features = pair_features(pair, methods, grid, sd, dino, first, projection, streams)
    trg_kps, rows, threshold, ids = pair_keypoints(pair, grid)
    out = []
    for name, method in methods.items():
        found = features.similarity(method, rows).argmax(dim=1).numpy()
        pred = index_to_pixel(found, grid)
        error = np.linalg.norm(pred - trg_kps, axis=1)
        for k in range(len(error)):
            out.append({"method": name, "pair_id": pair.pair_id, "category": pair.category, "kp": k,
                        "kp_id": int(ids[k]), "error": float(error[k]), "threshold": threshold,
                        "pred_index": int(found[k]), "pred_x": pred[k, 0], "pred_y": pred[k, 1],
                        "gt_x": trg_kps[k, 0], "gt_y": trg_kps[k, 1]})
    return out
