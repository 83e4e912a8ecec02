"""PCK with the reference's conventions, its four aggregates and their bootstrap intervals (PROTOCOL §7.1, AMBIG-9).

Evaluations produce one record per evaluated keypoint (schema: :mod:`sdfuse.evaluation.records`): its
``category``, the ``pair`` it belongs to (position in the evaluated list, so a pair drawn twice
counts twice), its prediction ``error`` and the pair's ``threshold`` length, both in the DINO
frame. A keypoint is correct at α when error < α · threshold (strict).

Every aggregate is a ratio of per-category sums over pairs (keypoints, hits, per-pair PCK,
pairs), so the point value and the bootstrap replicates (pairs resampled within categories,
:mod:`sdfuse.protocol.bootstrap`) come from one formula, :func:`_statistics`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import LEVEL, RESAMPLES, SEED, interval, stratified_sums

AGGREGATES = ("category_mean", "pair_weighted", "keypoint_pooled", "per_image")
"""(a) mean of per-category PCK; (b) the same weighted by evaluated pairs per category;
(c) all keypoints pooled; (d) mean over pairs of per-pair PCK (PROTOCOL §7.1, AMBIG-9)."""
SPAIR_ALPHAS = (0.01, 0.05, 0.10)
RECORD_KEYS = ("dataset", "setting", "method")
"""The columns of a table's keypoint records that name its rows (:mod:`sdfuse.evaluation.records`)."""


def correct(error: np.ndarray, threshold: np.ndarray, alpha: float) -> np.ndarray:
    """PCK hit: ‖p̂ − p‖ < α · threshold, strict (PROTOCOL §7.1)."""
    return np.asarray(error) < alpha * np.asarray(threshold)


def _pair_columns(records: pd.DataFrame, alphas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair (sorted by position): the columns [keypoints, hits per α, per-pair PCK per α, 1],
    its category and its position."""
    hits = np.stack([correct(records["error"], records["threshold"], a) for a in alphas], axis=1)
    by_pair = pd.DataFrame(hits, index=records.index).groupby(records["pair"].to_numpy(), sort=True)
    kps = by_pair.size().to_numpy(dtype=np.float64)
    sums = by_pair.sum().to_numpy(dtype=np.float64)
    first = records.groupby("pair", sort=True)["category"].first()
    values = np.column_stack([kps, sums, sums / kps[:, None], np.ones_like(kps)])
    return values, first.to_numpy(), first.index.to_numpy()


def _statistics(sums: np.ndarray, n_alphas: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The four aggregates (..., A) and per-category PCK (..., C, A), in %, from per-category sums (..., C, K)."""
    kps, hits = sums[..., :1], sums[..., 1:1 + n_alphas]
    per_pair, pairs = sums[..., 1 + n_alphas:1 + 2 * n_alphas], sums[..., -1:]
    categories = 100 * hits / kps
    return {"category_mean": categories.mean(axis=-2),
            "pair_weighted": (categories * pairs).sum(axis=-2) / pairs.sum(axis=-2),
            "keypoint_pooled": 100 * hits.sum(axis=-2) / kps.sum(axis=-2),
            "per_image": 100 * per_pair.sum(axis=-2) / pairs.sum(axis=-2)}, categories


def per_category(records: pd.DataFrame, alpha: float) -> pd.Series:
    """PCK per category in %, keypoints pooled over all pairs of the category (PROTOCOL §7.1)."""
    labels, point, _ = stratified_sums(*_pair_columns(records, [alpha])[:2], resamples=0)
    return pd.Series(_statistics(point, 1)[1][:, 0], index=pd.Index(labels, name="category"))


def aggregates(records: pd.DataFrame, alpha: float) -> dict[str, float]:
    """The four across-category aggregates of PCK@α in % (PROTOCOL §7.1, AMBIG-9).

    Applied to one row's keypoint records (e.g. read back with :func:`sdfuse.evaluation.records.read_records`)
    it recomputes that row's aggregates of the table.
    """
    _, point, _ = stratified_sums(*_pair_columns(records, [alpha])[:2], resamples=0)
    return {name: float(value[0]) for name, value in _statistics(point, 1)[0].items()}


def table_aggregates(records: pd.DataFrame, alpha: float, by: tuple[str, ...] = RECORD_KEYS) -> pd.DataFrame:
    """The four aggregates of PCK@α (columns) for every row ``by`` of a table's keypoint records."""
    rows = {key: aggregates(group, alpha) for key, group in records.groupby(list(by), sort=False)}
    return pd.DataFrame.from_dict(rows, orient="index")[list(AGGREGATES)].rename_axis(list(by))


def pck_table(records: pd.DataFrame, alphas=SPAIR_ALPHAS, by: tuple[str, ...] = (), resamples: int = RESAMPLES,
              seed: int = SEED, level: float = LEVEL) -> pd.DataFrame:
    """Tidy PCK: one row per (group, alpha, aggregate or category) with ``value`` in % and its interval.

    Aggregate rows carry category "all"; per-category rows carry aggregate "per_category".
    ``ci_low``/``ci_high`` bound the ``level`` bootstrap interval from ``resamples`` resamples of
    the pairs within each category (:mod:`sdfuse.protocol.bootstrap`; NaN when ``resamples`` is 0). Groups
    evaluated on the same pairs (the rows of one table) share one set of draws: they are resampled
    jointly, in one matrix product.
    """
    alphas = list(alphas)
    groups = list(records.groupby(list(by), sort=False)) if by else [((), records)]
    columns = [_pair_columns(group, alphas) for _, group in groups]
    layouts: dict[tuple, list[int]] = {}
    for index, (_, categories, pairs) in enumerate(columns):
        layouts.setdefault((tuple(pairs), tuple(categories)), []).append(index)
    sums: dict[int, tuple] = {}
    for members in layouts.values():
        width = columns[members[0]][0].shape[1]
        stacked = np.hstack([columns[i][0] for i in members])
        labels, point, replicates = stratified_sums(stacked, columns[members[0]][1], resamples, seed)
        for slot, i in enumerate(members):
            part = slice(slot * width, (slot + 1) * width)
            sums[i] = labels, point[:, part], replicates[..., part]
    rows = []
    for index, (key, _) in enumerate(groups):
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        categories, point, replicates = sums[index]
        (values, per_cat), (samples, per_cat_samples) = _statistics(point, len(alphas)), _statistics(replicates, len(alphas))
        low_cat, high_cat = interval(per_cat_samples, level)
        low, high = interval(np.stack([samples[name] for name in AGGREGATES], axis=1), level)
        for a, alpha in enumerate(alphas):
            for g, name in enumerate(AGGREGATES):
                rows.append({**labels, "alpha": alpha, "aggregate": name, "category": "all",
                             "value": float(values[name][a]), "ci_low": float(low[g, a]), "ci_high": float(high[g, a])})
            for c, category in enumerate(categories):
                rows.append({**labels, "alpha": alpha, "aggregate": "per_category", "category": category,
                             "value": float(per_cat[c, a]), "ci_low": float(low_cat[c, a]),
                             "ci_high": float(high_cat[c, a])})
    return pd.DataFrame(rows)
