"""Supp. Fig. 1's curve: PCK of the fusion against its weight α on SD (PROTOCOL §5.1, §5.3).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation.pair_features import Method
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from .common import spair_pck


def alpha_sweep(run: Run, alphas=tuple(np.round(np.linspace(0, 1, 11), 2)), resamples: int = RESAMPLES) -> pd.DataFrame:
    """PCK of the fusion for each weight α on SD (supp. Fig. 1's curve; α = 0: DINO, α = 1: SD)."""
    rows = {f"{a:.2f}": (f"α={a:.2f}", Method("Fuse", pca_dim=run.pca_dim, alpha=float(a))) for a in alphas}
    table = spair_pck(run, rows, resamples=resamples)
    table.insert(3, "fusion_alpha", table["setting"].str.removeprefix("α=").astype(float))
    return table
