"""Outcome analysis of supp. Tables 6, 7 and Fig. 2: which matcher is right when (PROTOCOL §10).

A reconstruction from the supplement's text (there is no reference code, AMBIG-14/15): per
mutually visible keypoint, the success of SD, DINO and Fuse at PCK@0.10; the eight outcome
classes; conditional probabilities as ratios of class counts; and relative distances — the
min–max normalised distance of a matcher at the ground-truth cell or at the other matcher's
prediction, with Euclidean distance between L2-normalised descriptors.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .datasets.pairs import Pair
from .evaluation import Method, pair_features, pair_keypoints
from .features.cache import CachedExtractor
from .matching import index_to_pixel, keypoint_rows, similarity_rows
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


def outcome_records(pairs: list[Pair], methods: dict[str, Method], grid: int, sd: CachedExtractor,
                    dino: CachedExtractor, progress: bool = True) -> pd.DataFrame:
    """One row per evaluated keypoint with every matcher's error and relative distances.

    ``methods`` maps "SD", "DINO" and "Fuse" to their :class:`Method`. Columns: category, pair,
    kp, threshold, gt_index (ground-truth cell), pred_<M> (M's matched cell), error_<M>,
    rel_<M>_gt (M's relative distance at the ground-truth cell) and rel_<M>_at_<N> (M's relative
    distance at matcher N's prediction).
    """
    rows, done = [], {}
    for position, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
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


def outcome_classes(records: pd.DataFrame, alpha: float = 0.10) -> pd.Series:
    """The 3-bit class (SD, DINO, Fuse success at PCK@α, strict) of every keypoint."""
    bits = [correct(records[f"error_{m}"], records["threshold"], alpha).astype(int) for m in MATCHERS]
    return pd.Series([f"{a}{b}{c}" for a, b, c in zip(*bits)], index=records.index, name="outcome")


def outcome_ratios(records: pd.DataFrame, alpha: float = 0.10, by: str | None = None) -> pd.DataFrame:
    """Supp. Table 6: share (%) of keypoints in each outcome class, pooled (and per ``by`` group)."""
    classes = outcome_classes(records, alpha)
    groups = {"all": classes} if by is None else {"all": classes, **dict(iter(classes.groupby(records[by])))}
    table = pd.DataFrame({name: 100 * group.value_counts(normalize=True).reindex(OUTCOME_CLASSES, fill_value=0.0)
                          for name, group in groups.items()})
    table.index.name = "outcome"
    return table


def conditional_probabilities(ratios: Mapping[str, float]) -> dict[str, float]:
    """Fig. 2's conditional probabilities (%) and the marginals, from class ratios or counts (PROTOCOL §10.3)."""
    r = {k: float(ratios[k]) for k in OUTCOME_CLASSES}
    total = sum(r.values())

    def share(*classes: str) -> float:
        return 100 * sum(r[c] for c in classes) / total

    def given(hit: str, *condition: str) -> float:
        return 100 * r[hit] / sum(r[c] for c in condition)

    return {
        "P(Fuse ✓ | SD ✗, DINO ✗)": given("001", "000", "001"),
        "P(Fuse ✓ | SD ✗, DINO ✓)": given("011", "010", "011"),
        "P(Fuse ✓ | SD ✓, DINO ✗)": given("101", "100", "101"),
        "P(Fuse ✗ | SD ✓, DINO ✓)": given("110", "110", "111"),
        "P(SD ✓)": share("100", "101", "110", "111"),
        "P(DINO ✓)": share("010", "011", "110", "111"),
        "P(Fuse ✓)": share("001", "011", "101", "111"),
        "P(SD ✓ or DINO ✓)": share("010", "011", "100", "101", "110", "111"),
    }


def relative_distance_table(records: pd.DataFrame, alpha: float = 0.10) -> pd.DataFrame:
    """Supp. Table 7: mean relative distance of SD and DINO at the correct match (the ground truth)
    and at the false match (the other matcher's prediction), for classes 011, 101 and on average."""
    classes = outcome_classes(records, alpha)
    columns = {("SD", "correct match"): "rel_SD_gt", ("SD", "false match"): "rel_SD_at_DINO",
               ("DINO", "correct match"): "rel_DINO_gt", ("DINO", "false match"): "rel_DINO_at_SD"}
    rows = {"011": records[classes == "011"], "101": records[classes == "101"], "Average": records}
    table = pd.DataFrame({key: {name: part[col].mean() if len(part) else np.nan for name, part in rows.items()}
                          for key, col in columns.items()})
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "scenario"
    return table
