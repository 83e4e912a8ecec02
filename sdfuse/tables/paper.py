"""The paper's numbers as data, transcribed from the supplementary material (``shared/seed``).

Each table keeps its source. Values are PCK in %.
"""
from __future__ import annotations

import pandas as pd

SOURCE = "Zhang et al., A Tale of Two Features, NeurIPS 2023, supplementary material"

TABLE1_SUBSETS: tuple[tuple[int, ...], ...] = ((2,), (5,), (8,), (2, 5), (2, 8), (5, 8), (2, 5, 8))
"""Row order of supp. Table 1. The text extraction lost which of "2 5 8" each row marks (AMBIG-15);
this order is inferred (singletons, pairs, all) and fits the text: layer 5 alone is strong, all three
are best for Fuse, and the last row equals the default of Tables 2 and 3."""

TABLE1_PCK = {
    # subset: (SD @0.01, 0.05, 0.10, Fuse @0.01, 0.05, 0.10)
    (2,): (1.2, 19.2, 39.2, 5.7, 40.1, 58.3),
    (5,): (4.9, 39.5, 54.2, 7.0, 46.4, 61.6),
    (8,): (4.3, 23.9, 31.7, 7.0, 42.2, 55.5),
    (2, 5): (4.8, 38.8, 53.1, 6.9, 45.7, 61.6),
    (2, 8): (4.5, 30.5, 42.6, 7.6, 43.0, 59.3),
    (5, 8): (5.7, 40.5, 53.0, 7.6, 46.8, 61.8),
    (2, 5, 8): (5.6, 39.9, 53.4, 7.7, 46.2, 62.2),
}
TABLE1_DEFAULT = (2, 5, 8)
ALPHAS = (0.01, 0.05, 0.10)


def subset_label(layers: tuple[int, ...]) -> str:
    """'2+5+8' for (2, 5, 8)."""
    return "+".join(str(layer) for layer in sorted(layers))


def table1() -> pd.DataFrame:
    """Supp. Table 1 in long form: setting, method, alpha, value (SPair-71k, 20 pairs per category)."""
    return _long({subset_label(subset): values for subset, values in TABLE1_PCK.items()}, ("SD", "Fuse"))

TABLE2_PCK = {
    # setting: (SD @0.01, 0.05, 0.10, Fuse @0.01, 0.05, 0.10); PCA d is per layer (AMBIG-4)
    "projection": (5.7, 34.8, 46.0, 7.5, 44.9, 59.9),
    "PCA 384": (5.7, 39.5, 53.0, 7.7, 46.3, 61.8),
    "PCA 256": (5.6, 39.9, 53.4, 7.7, 46.2, 62.2),
    "PCA 128": (5.4, 39.9, 52.8, 7.4, 45.7, 61.9),
}

TABLE3_PCK = {
    # fusion strategy: Fuse @0.01, 0.05, 0.10
    "sum": (6.8, 43.6, 57.7),
    "sum_normalized": (6.9, 43.7, 57.8),
    "concat": (6.7, 43.6, 57.9),
    "concat_normalized": (7.7, 46.2, 62.2),
}

TABLE5 = {
    # method: SPair @0.01/0.05/0.10, PF-Pascal @0.05/0.10/0.15, TSS @0.05 FG3DCar/JODS/PASCAL/Avg.
    "DINOv2": ((5.8, 40.0, 55.4), (61.1, 77.3, 83.3), (82.8, 73.9, 53.9, 72.0)),
    "Filter": ((4.7, 37.4, 55.3), (61.6, 79.0, 84.6), (86.4, 76.0, 60.3, 76.2)),
    "Ensemble": ((6.4, 40.7, 56.1), (62.6, 79.7, 86.1), (84.7, 74.2, 59.7, 74.8)),
    "Fuse": ((8.2, 47.5, 62.9), (72.1, 86.0, 90.6), (94.3, 73.2, 60.9, 79.7)),
}

TABLE6_RATIOS = {"000": 26.30, "001": 2.90, "010": 5.82, "011": 9.94,
                 "100": 4.57, "101": 10.76, "110": 0.38, "111": 39.28}
"""Supp. Table 6: share (%) of keypoints per outcome (SD, DINO, Fuse), SPair-71k test, PCK@0.10."""

FIG2_PROBABILITIES = {"P(Fuse ✓ | SD ✗, DINO ✗)": 10.0, "P(Fuse ✓ | SD ✗, DINO ✓)": 63.1,
                      "P(Fuse ✓ | SD ✓, DINO ✗)": 70.2, "P(Fuse ✗ | SD ✓, DINO ✓)": 1.0}
"""The four conditional probabilities (%) stated in the text of A.7 for Fig. 2."""

TABLE7 = {
    # scenario: (SD correct match, SD false match, DINO correct match, DINO false match); None = "–"
    "011": (0.156, None, None, 0.328),
    "101": (None, 0.248, 0.141, None),
    "Average": (0.218, 0.200, 0.198, 0.239),
}

TABLE8 = {
    # method: CUB-200 (first three classes, ASIC protocol) PCK@0.10, 0.05, 0.01; None = not reported
    "VGG+MLS": (25.8, 18.3, None),
    "DINOv1+MLS": (67.0, 52.0, None),
    "ASIC": (75.9, 57.9, None),
    "DINOv1+NN": (68.3, 52.8, None),
    "DINOv2": (80.0, 65.6, 12.7),
    "SD": (61.4, 46.7, 8.7),
    "Fuse α=0.5": (79.2, 64.6, 14.3),
    "Fuse α=0.8": (80.3, 66.2, 12.2),
}


def _long(table: dict, methods: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for setting, values in table.items():
        for m, method in enumerate(methods):
            for a, alpha in enumerate(ALPHAS):
                rows.append({"setting": setting, "method": method, "alpha": alpha, "value": values[3 * m + a]})
    return pd.DataFrame(rows)


def table2() -> pd.DataFrame:
    """Supp. Table 2 (reduction) in long form: setting, method, alpha, value."""
    return _long(TABLE2_PCK, ("SD", "Fuse"))


def table3() -> pd.DataFrame:
    """Supp. Table 3 (fusion strategy, Fuse only) in long form."""
    return _long(TABLE3_PCK, ("Fuse",))


def table5() -> pd.DataFrame:
    """Supp. Table 5 in long form: setting, dataset, alpha, value (TSS at PCK@0.05, "Avg." weighted)."""
    rows = []
    for setting, (spair, pascal, tss) in TABLE5.items():
        rows += [{"setting": setting, "dataset": "SPair-71k", "alpha": a, "value": v} for a, v in zip(ALPHAS, spair)]
        rows += [{"setting": setting, "dataset": "PF-Pascal", "alpha": a, "value": v}
                 for a, v in zip((0.05, 0.10, 0.15), pascal)]
        rows += [{"setting": setting, "dataset": f"TSS/{subset}", "alpha": 0.05, "value": v}
                 for subset, v in zip(("FG3DCar", "JODS", "PASCAL", "Avg."), tss)]
    return pd.DataFrame(rows)


TABLE8_BASELINES = ("VGG+MLS", "DINOv1+MLS", "ASIC", "DINOv1+NN")
"""Methods of supp. Table 8 that are cited from other papers: shown with the paper's numbers only."""


def table8() -> pd.DataFrame:
    """Supp. Table 8 in long form: setting, alpha, value (CUB-200, first three classes, ASIC protocol)."""
    rows = [{"setting": setting, "alpha": alpha, "value": value}
            for setting, values in TABLE8.items() for alpha, value in zip((0.10, 0.05, 0.01), values)
            if value is not None]
    return pd.DataFrame(rows)
