"""Supp. Tables 6, 7 and Fig. 2: the per-keypoint records of SD, DINO and Fuse (PROTOCOL §10).

The shares, probabilities and relative distances are computed from them by
:func:`sdfuse.protocol.outcomes.outcome_tables`.
"""
from __future__ import annotations

import pandas as pd

from ..evaluation.outcomes import outcome_records
from ..evaluation.pair_features import Method
from ..profiles.runs import Run
from .common import spair_pairs_with_features


def outcomes(run: Run, alpha: float = 0.5) -> pd.DataFrame:
    """Per-keypoint records of SD, DINO and Fuse for supp. Tables 6, 7 and Fig. 2 (PROTOCOL §10)."""
    methods = {"SD": Method("SD", pca_dim=run.pca_dim), "DINO": Method("DINO"),
               "Fuse": Method("Fuse", pca_dim=run.pca_dim, alpha=alpha)}
    pairs = spair_pairs_with_features(run)
    return outcome_records(pairs, methods, run.grid, run.sd_features, run.dino_features, progress=run.progress)
