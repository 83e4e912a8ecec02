"""Supp. Table 1 (UNet layers): which SD decoder layers, alone and fused with DINOv2 (PROTOCOL §2.4, §5, §7.1).
"""
from __future__ import annotations

import pandas as pd

from ..evaluation.pair_features import Method
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from .common import spair_pck
from .paper import TABLE1_SUBSETS, subset_label


def table1(run: Run, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 1 (UNet layers): 7 subsets of layers {2, 5, 8} × {SD, Fuse} × PCK@{0.01, 0.05, 0.10}."""
    rows = {f"{kind} {subset_label(s)}": (subset_label(s), Method(kind, sd_layers=s, pca_dim=run.pca_dim))
            for s in TABLE1_SUBSETS for kind in ("SD", "Fuse")}
    return spair_pck(run, rows, resamples=resamples)
