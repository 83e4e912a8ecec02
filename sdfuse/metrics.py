"""PCK with the reference's conventions and its four aggregates (PROTOCOL §7.1, AMBIG-9).

Evaluations produce one record per evaluated keypoint: its ``category``, the ``pair`` it belongs
to (position in the evaluated list, so a pair drawn twice counts twice), its prediction ``error``
and the pair's ``threshold`` length, both in the DINO frame. A keypoint is correct at α when
error < α · threshold (strict).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

AGGREGATES = ("category_mean", "pair_weighted", "keypoint_pooled", "per_image")
"""(a) mean of per-category PCK; (b) the same weighted by evaluated pairs per category;
(c) all keypoints pooled; (d) mean over pairs of per-pair PCK (PROTOCOL §7.1, AMBIG-9)."""
SPAIR_ALPHAS = (0.01, 0.05, 0.10)


def correct(error: np.ndarray, threshold: np.ndarray, alpha: float) -> np.ndarray:
    """PCK hit: ‖p̂ − p‖ < α · threshold, strict (PROTOCOL §7.1)."""
    return np.asarray(error) < alpha * np.asarray(threshold)


def per_category(records: pd.DataFrame, alpha: float) -> pd.Series:
    """PCK per category in %, keypoints pooled over all pairs of the category (PROTOCOL §7.1)."""
    hits = correct(records["error"], records["threshold"], alpha)
    return 100 * pd.Series(hits, index=records.index).groupby(records["category"]).mean()


def aggregates(records: pd.DataFrame, alpha: float) -> dict[str, float]:
    """The four across-category aggregates of PCK@α in % (PROTOCOL §7.1, AMBIG-9)."""
    hits = pd.Series(correct(records["error"], records["threshold"], alpha), index=records.index)
    categories = hits.groupby(records["category"]).mean()
    pairs_per_category = records.groupby("category")["pair"].nunique()
    per_pair = hits.groupby(records["pair"]).mean()
    return {
        "category_mean": 100 * float(categories.mean()),
        "pair_weighted": 100 * float(np.average(categories, weights=pairs_per_category[categories.index])),
        "keypoint_pooled": 100 * float(hits.mean()),
        "per_image": 100 * float(per_pair.mean()),
    }


def pck_table(records: pd.DataFrame, alphas=SPAIR_ALPHAS, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Tidy PCK: one row per (group, alpha, aggregate or category) with ``value`` in %.

    Aggregate rows carry category "all"; per-category rows carry aggregate "per_category".
    """
    rows = []
    groups = records.groupby(list(by), sort=False) if by else [((), records)]
    for key, group in groups:
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for alpha in alphas:
            for name, value in aggregates(group, alpha).items():
                rows.append({**labels, "alpha": alpha, "aggregate": name, "category": "all", "value": value})
            for category, value in per_category(group, alpha).items():
                rows.append({**labels, "alpha": alpha, "aggregate": "per_category", "category": category,
                             "value": float(value)})
    return pd.DataFrame(rows)
