"""The paper-vs-reproduced bar charts the table pages share: paper (grey) beside reproduced (blue, with its
95 % interval as error bars).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def error_bars(rows: pd.DataFrame) -> np.ndarray:
    """(2, n) distances from each reproduced value to its interval bounds (0 without an interval)."""
    low = (rows["reproduced"] - rows["ci_low"]).clip(lower=0).fillna(0)
    high = (rows["ci_high"] - rows["reproduced"]).clip(lower=0).fillna(0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def paired_bars(rows: pd.DataFrame, panel: str, xlabel: str, ylabel: str, columns: int):
    """One panel per value of ``panel``: paper (grey) and reproduced (blue, 95 % interval as error
    bars) per setting."""
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(rows[panel]))
    ncols = min(columns, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, panels):
        part = rows[rows[panel] == name]
        x = np.arange(len(part))
        ax.bar(x - 0.2, part["paper"], width=0.4, color="#8c8c8c", label="paper")
        ax.bar(x + 0.2, part["reproduced"], width=0.4, color="#2f6fdf", label="reproduced",
               yerr=error_bars(part), error_kw={"ecolor": "black", "capsize": 2, "elinewidth": 0.8})
        ax.set_xticks(x, part["setting"], rotation=30, ha="right", fontsize=8)
        ax.set_title(str(name))
        ax.set_xlabel(xlabel)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_comparison(comparison: pd.DataFrame, alpha: float = 0.10, xlabel: str = "setting"):
    """Bar chart of PCK@α per setting: paper vs reproduced with its 95 % interval, one panel per method."""
    rows = comparison[np.isclose(comparison["alpha"], alpha)]
    return paired_bars(rows, "method", xlabel, f"PCK@{alpha:.2f} (%)", columns=3)
