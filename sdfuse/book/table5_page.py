"""The DINOv2-variants page (supp. Table 5, notebook ``05_dino_variants``): one view per benchmark, its plot, glue.
"""
from __future__ import annotations

import pandas as pd

from .figures import paired_bars
from .pages import comparison_view, glue_value


def per_dataset_views(comparison: pd.DataFrame, profile: str) -> None:
    """Display one paper-vs-ours table per benchmark (Table 5)."""
    from IPython.display import Markdown, display

    for dataset, rows in comparison.groupby("dataset", sort=False):
        display(Markdown(f"**{dataset}**"))
        threshold = "bbox" if dataset == "SPair-71k" else "image size" if dataset == "PF-Pascal" else "α·max(H, W), ≤"
        display(comparison_view(rows, profile, caption=f"PCK (%) on {dataset}, threshold {threshold}"))


def plot_table5(comparison: pd.DataFrame):
    """PCK of the four DINOv2 variants per benchmark column: paper vs ours with its 95 % interval."""
    rows = comparison.assign(column=comparison["dataset"] + " @" + comparison["alpha"].map("{:.2f}".format))
    return paired_bars(rows, "column", "", "PCK (%)", columns=5)


def glue_table5(comparison: pd.DataFrame) -> None:
    """Glue Fuse's and DINOv2's headline cells of Table 5."""
    for _, row in comparison[comparison["setting"].isin(["Fuse", "DINOv2"])].iterrows():
        key = f"table5_{row['setting'].lower()}_{row['dataset'].replace('/', '_').replace('-', '').replace('.', '')}"
        glue_value(f"{key}_{int(round(row['alpha'] * 100)):02d}", row["reproduced"])
