"""The keypoint records of the outcome analysis (supp. Tables 6, 7, Fig. 2; PROTOCOL §10).

Per mutually visible keypoint: every matcher's matched cell and error and its relative distances
(:func:`sdfuse.protocol.outcomes.relative_distance`) at the ground-truth cell and at the other
matchers' predictions; the classes, shares and intervals are :mod:`sdfuse.protocol.outcomes`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.datasets.pairs import Pair
from ..features.cache import CachedExtractor
from ..protocol.matching import index_to_pixel, keypoint_rows, similarity_rows
from ..protocol.outcomes import MATCHERS, relative_distance
from .pair_features import Method, pair_features, pair_keypoints


def outcome_records(pairs: list[Pair], methods: dict[str, Method], grid: int, sd: CachedExtractor,
                    dino: CachedExtractor, progress: bool = True) -> pd.DataFrame:
    """One row per evaluated keypoint with every matcher's error and relative distances.

    ``methods`` maps "SD", "DINO" and "Fuse" to their :class:`Method`. Columns: category, pair,
    kp, threshold, gt_index (ground-truth cell), pred_<M> (M's matched cell), error_<M>,
    rel_<M>_gt (M's relative distance at the ground-truth cell) and rel_<M>_at_<N> (M's relative
    distance at matcher N's prediction).
    """
    rows, done = [], {}
    for position, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):  # pragma: no mutate  (progress bar)
        if pair.pair_id not in done:
            done[pair.pair_id] = _pair_outcomes(pair, methods, grid, sd, dino)
        rows += [{**row, "pair": position} for row in done[pair.pair_id]]
    return pd.DataFrame(rows)


def _pair_outcomes(pair, methods, grid, sd, dino) -> list[dict]:
    features = pair_features(pair, methods, grid, sd, dino)
    trg_kps, rows, threshold, _ = pair_keypoints(pair, grid)
    gt = keypoint_rows(trg_kps, grid, 14 * grid)
    found, distance = {}, {}
    for name in MATCHERS:
        similarity = similarity_rows(*features.descriptors(methods[name]), rows)
        found[name] = similarity.argmax(dim=1).numpy()
        distance[name] = (2 - 2 * similarity).clamp_min(0).sqrt()
    columns = {"threshold": np.full(len(rows), threshold), "gt_index": gt}
    for name in MATCHERS:
        columns[f"pred_{name}"] = found[name]
        columns[f"error_{name}"] = np.linalg.norm(index_to_pixel(found[name], grid) - trg_kps, axis=1)
        columns[f"rel_{name}_gt"] = relative_distance(distance[name], gt)
        for other in MATCHERS:
            if other != name:
                columns[f"rel_{name}_at_{other}"] = relative_distance(distance[name], found[other])
    return [{"category": pair.category, "pair_id": pair.pair_id, "kp": k,
             **{key: value[k].item() for key, value in columns.items()}} for k in range(len(rows))]
