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
    rows = []
    for subset, values in TABLE1_PCK.items():
        for m, method in enumerate(("SD", "Fuse")):
            for a, alpha in enumerate(ALPHAS):
                rows.append({"setting": subset_label(subset), "method": method, "alpha": alpha,
                             "value": values[3 * m + a]})
    return pd.DataFrame(rows)
