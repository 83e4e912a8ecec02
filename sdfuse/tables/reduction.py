"""Supp. Table 2 (dimensionality reduction): co-PCA sizes and ODISE's projection heads (PROTOCOL §3).
"""
from __future__ import annotations

import pandas as pd

from ..evaluation.pair_features import Method
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from .common import spair_pck
from .paper import TABLE2_PCK


def table2(run: Run, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 2 (reduction): co-PCA with d per layer from the profile's sweep (AMBIG-4), SD and Fuse.

    Settings carry the paper's row labels ("PCA 384", "PCA 256", "PCA 128"); the ``pca_dim``
    column gives the d actually used (the same in the paper profile, scaled down in smoke). The
    "projection" row (ODISE's trained heads, PROTOCOL §3.3) is computed when the run has the ODISE
    checkpoint (``captioner_checkpoint``); otherwise it is absent.
    """
    labels = [label for label in TABLE2_PCK if label.startswith("PCA")]
    rows = {f"{kind} {label}": (label, Method(kind, pca_dim=d))
            for label, d in zip(labels, run.pca_sweep) for kind in ("SD", "Fuse")}
    if run.projection_features is not None:
        rows |= {f"{kind} projection": ("projection", Method(kind, reduction="projection")) for kind in ("SD", "Fuse")}
    table = spair_pck(run, rows, resamples=resamples)
    table.insert(3, "pca_dim", table["setting"].map(dict(zip(labels, run.pca_sweep))).astype("Int64"))
    return table
