"""One function per supplementary table, each returning a tidy DataFrame from cached features.

Long format (DESIGN "Results are artifacts"): setting, method, dataset, alpha, aggregate,
category, value (PCK in %). Aggregate rows have category "all"; per-category rows have
aggregate "per_category".
"""
from __future__ import annotations

import pandas as pd

from .evaluation import Method, evaluate
from .metrics import SPAIR_ALPHAS, pck_table
from .paper import TABLE1_SUBSETS, subset_label
from .profiles import Run


def table1_methods(pca_dim: int = 256, alpha: float = 0.5) -> dict[str, Method]:
    """The 14 rows of supp. Table 1: every layer subset of {2, 5, 8} for SD alone and for Fuse."""
    return {f"{kind} {subset_label(subset)}": Method(kind, sd_layers=subset, pca_dim=pca_dim, alpha=alpha)
            for subset in TABLE1_SUBSETS for kind in ("SD", "Fuse")}


def table1(run: Run) -> pd.DataFrame:
    """Supp. Table 1 (UNet layers) on SPair-71k: 7 subsets × {SD, Fuse} × PCK@{0.01, 0.05, 0.10}.

    One extraction per unique image serves all 14 rows; co-PCA runs once per layer and pair.
    """
    pairs = run.spair_pairs()
    images = {p.src_image for p in pairs} | {p.trg_image for p in pairs}
    run.sd_features.prefill(sorted(images), progress=run.progress)
    run.dino_features.prefill(sorted(images), progress=run.progress)
    records = evaluate(pairs, table1_methods(), run.grid, run.sd_features, run.dino_features, progress=run.progress)
    table = pck_table(records, SPAIR_ALPHAS, by=("method",))
    kind_setting = table["method"].str.split(" ", n=1, expand=True)
    table.insert(0, "setting", kind_setting[1])
    table["method"] = kind_setting[0]
    table.insert(2, "dataset", "SPair-71k")
    return table
