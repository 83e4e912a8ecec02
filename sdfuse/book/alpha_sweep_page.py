"""The α-sweep page (supp. Fig. 1's curve, notebook ``04_alpha_sweep``): the curve's rows, one value, the plot.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def alpha_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the α sweep for the curve: mean of per-category PCK, every threshold."""
    return table[(table["aggregate"] == "category_mean") & (table["category"] == "all")]


def curve_value(curve: pd.DataFrame, fusion_alpha: float, alpha: float) -> float:
    """PCK@alpha of the fusion with weight ``fusion_alpha``."""
    row = curve[np.isclose(curve["fusion_alpha"], fusion_alpha) & np.isclose(curve["alpha"], alpha)]
    return float(row["value"].item())


def plot_alpha_curve(curve: pd.DataFrame, paper_default: float):
    """PCK against the fusion weight α, one line per threshold with its 95 % band, and the paper's default point."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, curve["alpha"].nunique()))
    for colour, (kappa, line) in zip(colours, curve.sort_values("fusion_alpha").groupby("alpha")):
        ax.plot(line["fusion_alpha"], line["value"], marker="o", color=colour, label=f"{kappa:g}")
        ax.fill_between(line["fusion_alpha"], line["ci_low"], line["ci_high"], color=colour, alpha=0.2, linewidth=0)
    ax.scatter([0.5], [paper_default], color="black", marker="*", s=120, zorder=5, label="paper, α = 0.5, κ = 0.10")
    ax.set(xlabel="α (weight on SD; 0 = DINOv2 alone, 1 = SD alone)", ylabel="PCK (%)",
           title="SPair-71k, mean of per-category PCK (bands: 95 % bootstrap interval)")
    ax.legend(title="κ")
    plt.close(fig)
    return fig
