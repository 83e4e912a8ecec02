"""Outcome analysis of supp. Tables 6, 7 and Fig. 2: which matcher is right when (PROTOCOL §10).

A reconstruction from the supplement's text (there is no reference code, AMBIG-14/15): per
mutually visible keypoint, the success of SD, DINO and Fuse at PCK@0.10; the eight outcome
classes; conditional probabilities as ratios of class counts; and relative distances — the
min–max normalised distance of a matcher at the ground-truth cell or at the other matcher's
prediction, with Euclidean distance between L2-normalised descriptors. Every share, probability
and mean comes with a bootstrap interval (pairs resampled within categories, :mod:`sdfuse.protocol.bootstrap`):
all are ratios of per-pair sums of class indicators and relative distances, so one resample of
those sums serves them all (:func:`outcome_tables`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from .bootstrap import RESAMPLES, SEED, interval, stratified_sums
from .metrics import correct

MATCHERS = ("SD", "DINO", "Fuse")
OUTCOME_CLASSES = ("000", "001", "010", "011", "100", "101", "110", "111")
"""Bits = success of (SD, DINO, Fuse), as in supp. Table 6's notation."""


def relative_distance(distances: torch.Tensor, at: np.ndarray) -> np.ndarray:
    """(d[at] − min d) / (max d − min d) per row of a (K, N) distance matrix (PROTOCOL §10.4)."""
    low = distances.min(dim=1).values
    span = (distances.max(dim=1).values - low).clamp_min(1e-12)
    picked = distances[torch.arange(len(at)), torch.as_tensor(at, dtype=torch.long)]
    return ((picked - low) / span).numpy()


def outcome_classes(records: pd.DataFrame, alpha: float = 0.10) -> pd.Series:
    """The 3-bit class (SD, DINO, Fuse success at PCK@α, strict) of every keypoint."""
    bits = [correct(records[f"error_{m}"], records["threshold"], alpha).astype(int) for m in MATCHERS]
    return pd.Series([f"{a}{b}{c}" for a, b, c in zip(*bits)], index=records.index, name="outcome")


def outcome_ratios(records: pd.DataFrame, alpha: float = 0.10, by: str | None = None) -> pd.DataFrame:
    """Supp. Table 6: share (%) of keypoints in each outcome class, pooled ("all") and, with
    ``by="category"``, per category (outcome × column)."""
    if by not in (None, "category"):
        raise ValueError(f"outcome shares are split by category only, got by={by!r}")
    tidy = outcome_tables(records, alpha, resamples=0)["table6"]
    table = tidy.pivot(index="outcome", columns="category", values="value")
    columns = ["all"] + ([c for c in dict.fromkeys(tidy["category"]) if c != "all"] if by else [])
    return table.reindex(index=list(OUTCOME_CLASSES), columns=columns).rename_axis(columns=None)


def conditional_probabilities(ratios: Mapping[str, float]) -> dict[str, float]:
    """Fig. 2's conditional probabilities (%) and the marginals, from class ratios or counts (PROTOCOL §10.3).

    The values may be arrays (e.g. bootstrap replicates of the class counts): computed elementwise.
    """
    r = {k: np.asarray(ratios[k], dtype=np.float64) for k in OUTCOME_CLASSES}
    total = sum(r.values())

    def share(*classes: str):
        return 100 * sum(r[c] for c in classes) / total

    def given(hit: str, *condition: str):
        return 100 * r[hit] / sum(r[c] for c in condition)

    values = {
        "P(Fuse ✓ | SD ✗, DINO ✗)": given("001", "000", "001"),
        "P(Fuse ✓ | SD ✗, DINO ✓)": given("011", "010", "011"),
        "P(Fuse ✓ | SD ✓, DINO ✗)": given("101", "100", "101"),
        "P(Fuse ✗ | SD ✓, DINO ✓)": given("110", "110", "111"),
        "P(SD ✓)": share("100", "101", "110", "111"),
        "P(DINO ✓)": share("010", "011", "110", "111"),
        "P(Fuse ✓)": share("001", "011", "101", "111"),
        "P(SD ✓ or DINO ✓)": share("010", "011", "100", "101", "110", "111"),
    }
    return {name: float(value) if value.ndim == 0 else value for name, value in values.items()}


DISTANCE_COLUMNS = {("SD", "correct match"): "rel_SD_gt", ("SD", "false match"): "rel_SD_at_DINO",
                    ("DINO", "correct match"): "rel_DINO_gt", ("DINO", "false match"): "rel_DINO_at_SD"}
"""Supp. Table 7's columns: a matcher's relative distance at the correct match (the ground truth)
and at the false match (the other matcher's prediction)."""
SCENARIOS = ("011", "101", "Average")
"""Supp. Table 7's rows: the keypoints of class 011, of class 101, and all keypoints."""


def _pair_sums(records: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: [count of each outcome class (8), sum of each Table-7 distance over each scenario's
    keypoints (3 × 4)] and the pair's category."""
    classes = outcome_classes(records, alpha).to_numpy()
    members = (classes[:, None] == np.array(OUTCOME_CLASSES)).astype(np.float64)
    scenario = np.column_stack([classes == "011", classes == "101", np.ones(len(classes), bool)])
    distances = records[list(DISTANCE_COLUMNS.values())].to_numpy(np.float64)
    masked = (scenario[:, :, None] * distances[:, None, :]).reshape(len(records), -1)
    columns = pd.DataFrame(np.column_stack([members, masked])).groupby(records["pair"].to_numpy(), sort=True)
    categories = records.groupby("pair", sort=True)["category"].first().to_numpy()
    return columns.sum().to_numpy(), categories


def _outcome_statistics(sums: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
    """Class shares (..., 8) in %, Fig. 2's probabilities and Table 7's means (..., 3, 4) from sums (..., K)."""
    counts = sums[..., :len(OUTCOME_CLASSES)]
    distance_sums = sums[..., len(OUTCOME_CLASSES):].reshape(*sums.shape[:-1], len(SCENARIOS), len(DISTANCE_COLUMNS))
    scenario_counts = np.stack([counts[..., OUTCOME_CLASSES.index("011")], counts[..., OUTCOME_CLASSES.index("101")],
                                counts.sum(axis=-1)], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = 100 * counts / counts.sum(axis=-1, keepdims=True)
        probabilities = conditional_probabilities(dict(zip(OUTCOME_CLASSES, np.moveaxis(counts, -1, 0))))
        means = distance_sums / scenario_counts[..., None]
    return shares, probabilities, means


def outcome_tables(records: pd.DataFrame, alpha: float = 0.10, resamples: int = RESAMPLES,
                   seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Supp. Table 6, Fig. 2 and Table 7 as tidy frames with ``value``, ``ci_low`` and ``ci_high``.

    ``table6``: outcome, category ("all" pooled, then each category), share in %; ``fig2``:
    quantity, probability in %; ``table7``: scenario, features, match, mean relative distance.
    Intervals: ``resamples`` resamples of the pairs within categories (NaN bounds when 0; a
    statistic undefined on a resample, e.g. a mean over an empty class, is left out of it).
    """
    categories, point, replicates = stratified_sums(*_pair_sums(records, alpha), resamples, seed)
    shares, probabilities, means = _outcome_statistics(point.sum(axis=0))
    category_shares = _outcome_statistics(point)[0]
    spread_shares, spread_probabilities, spread_means = _outcome_statistics(replicates.sum(axis=1))
    spread_category_shares = _outcome_statistics(replicates)[0]

    def rows(labels: list[dict], values: np.ndarray, spread: np.ndarray) -> pd.DataFrame:
        low, high = interval(spread.reshape(len(spread), values.size))
        return pd.DataFrame(labels).assign(value=values.ravel(), ci_low=low, ci_high=high)

    table6 = rows([{"outcome": o, "category": c} for c in ["all", *categories] for o in OUTCOME_CLASSES],
                  np.concatenate([shares[None], category_shares]),
                  np.concatenate([spread_shares[:, None], spread_category_shares], axis=1))
    fig2 = rows([{"quantity": q} for q in probabilities], np.array(list(probabilities.values())),
                np.stack(list(spread_probabilities.values()), axis=-1))
    table7 = rows([{"scenario": s, "features": f, "match": m} for s in SCENARIOS for f, m in DISTANCE_COLUMNS],
                  means, spread_means)
    return {"table6": table6, "fig2": fig2, "table7": table7}


def relative_distance_table(records: pd.DataFrame, alpha: float = 0.10) -> pd.DataFrame:
    """Supp. Table 7: mean relative distance of SD and DINO at the correct match (the ground truth)
    and at the false match (the other matcher's prediction), for classes 011, 101 and on average."""
    tidy = outcome_tables(records, alpha, resamples=0)["table7"]
    table = tidy.pivot(index="scenario", columns=["features", "match"], values="value")
    table = table.reindex(index=list(SCENARIOS), columns=pd.MultiIndex.from_tuples(list(DISTANCE_COLUMNS)))
    table.index.name = "scenario"
    return table
