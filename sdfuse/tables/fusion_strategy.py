"""Supp. Table 3 (fusion strategy): the four fusion operations and the reference's sum modes (PROTOCOL §5.4).
"""
from __future__ import annotations

import pandas as pd

from ..evaluation.pair_features import REFERENCE_SUM_BUG, Method
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from ..protocol.fusion import STRATEGIES
from .common import spair_pck


def table3(run: Run, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 3 (fusion strategy): the four intended operations (PROTOCOL §5.4) plus what the
    reference code's sum modes really compute (``*_reference`` rows, AMBIG-8)."""
    rows = {s: (s, Method("Fuse", pca_dim=run.pca_dim, fusion=s)) for s in STRATEGIES + tuple(REFERENCE_SUM_BUG)}
    return spair_pck(run, rows, resamples=resamples)
