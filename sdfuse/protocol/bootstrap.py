"""Bootstrap confidence intervals: evaluation units resampled within their strata.

The supplement evaluates a sample — 20 pairs drawn per category (PROTOCOL §7.1) — so every
reproduced number carries sampling uncertainty. It is estimated by resampling the evaluated
units (pairs; TSS pair folders) with replacement *within* their stratum (category; TSS subset),
each stratum keeping its size as the protocol's sampling does, and recomputing the statistic on
every resample. The interval is the percentile interval of the replicates at ``level`` (95 %):
:data:`RESAMPLES` resamples drawn from the fixed :data:`SEED`.

Every statistic of the book (the four PCK aggregates, per-category PCK, TSS means, outcome
shares, conditional probabilities, mean relative distances) is a ratio of per-stratum sums of
per-unit columns. So the whole bootstrap is, per stratum, one matrix of draw counts times the
unit columns (:func:`stratified_sums`); the statistics are then evaluated on all replicates at
once. With one seed and one layout of units the draws are the same for every call, so the rows
of a table (all evaluated on the same pairs) are resampled jointly.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError

RESAMPLES = 1000
"""Bootstrap resamples per interval (0 switches intervals off: NaN bounds)."""
SEED = 0
"""Seed of the resampling (numpy ``default_rng``); fixed, so intervals are reproducible."""
LEVEL = 0.95
"""Coverage of the percentile interval."""


def stratified_sums(values: np.ndarray, strata: np.ndarray, resamples: int = RESAMPLES,
                    seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-stratum column sums of ``values`` (U units × K columns), on the data and on each resample.

    Returns ``(labels, point, replicates)``: the sorted stratum labels (S), the sums on the data
    (S, K) and on ``resamples`` resamples (B, S, K). A resample draws, for each stratum of n units,
    n of its units with replacement.
    """
    if resamples < 0:
        raise ConfigError(f"bootstrap resamples must be >= 0 (0 = no intervals), got {resamples}")
    values = np.asarray(values, dtype=np.float64)
    labels, inverse = np.unique(np.asarray(strata), return_inverse=True)
    rng = np.random.default_rng(seed)
    point = np.zeros((len(labels), values.shape[1]))
    replicates = np.zeros((resamples, len(labels), values.shape[1]))
    for index in range(len(labels)):
        members = values[inverse == index]
        n = len(members)
        point[index] = members.sum(axis=0)
        if resamples:
            draws = rng.integers(0, n, size=(resamples, n), dtype=np.int64) + n * np.arange(resamples)[:, None]
            counts = np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)
            replicates[:, index] = counts @ members
    return labels, point, replicates


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (low, high) of ``replicates`` along axis 0, over the replicates where the
    statistic is defined (not NaN); NaN without replicates."""
    if not 0 < level < 1:
        raise ConfigError(f"confidence level must be in (0, 1), got {level}")
    replicates = np.asarray(replicates, dtype=np.float64)
    if len(replicates) == 0:
        empty = np.full(replicates.shape[1:], np.nan)
        return empty, empty.copy()
    tail = 50 * (1 - level)
    if not np.isnan(replicates).any():
        low, high = np.percentile(replicates, [tail, 100 - tail], axis=0)
        return low, high
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)            # a statistic undefined on every resample
        low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    return low, high
