"""Cost of the bootstrap intervals per table: :func:`sdfuse.protocol.metrics.pck_table` with 1,000 resamples
against the same call without intervals, on keypoint records of the paper's sizes.

Records are synthetic (random errors, thresholds 100 px), shaped like a 14-row SPair-71k table
(Table 1): 18 categories, 8 keypoints per pair, 20 pairs per category (the supplement's 360 pairs)
and all 12,234 test pairs (680 per category, the main paper's size). The bootstrap's share is the
difference of the two timings; everything else (hit counting, per-pair sums, the table rows) is the
same work with or without intervals. ``python -m benchmarks.bootstrap_cost`` prints the result.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sdfuse.protocol.bootstrap import RESAMPLES
from sdfuse.protocol.metrics import RECORD_KEYS, SPAIR_ALPHAS, pck_table

from .common import timed

CATEGORIES, KEYPOINTS, ROWS = 18, 8, 14


def table_records(pairs_per_category: int, seed: int = 0) -> pd.DataFrame:
    """Keypoint records of a ``ROWS``-row table on ``CATEGORIES`` × ``pairs_per_category`` pairs."""
    rng = np.random.default_rng(seed)
    pairs = CATEGORIES * pairs_per_category
    pair = np.repeat(np.arange(pairs), KEYPOINTS)
    category = np.repeat([f"c{i:02d}" for i in range(CATEGORIES)], pairs_per_category * KEYPOINTS)
    return pd.concat([pd.DataFrame({"dataset": "SPair-71k", "setting": f"row {r}", "method": "Fuse",
                                    "category": category, "pair": pair, "threshold": 100.0,
                                    "error": rng.exponential(20.0, len(pair))}) for r in range(ROWS)],
                     ignore_index=True)


def run(reps: int = 3) -> dict:
    out = {"rows": ROWS, "categories": CATEGORIES, "keypoints_per_pair": KEYPOINTS, "resamples": RESAMPLES}
    for name, per_category in (("sample_20_per_category", 20), ("all_test_pairs", 680)):
        records = table_records(per_category)
        plain = timed(lambda: pck_table(records, SPAIR_ALPHAS, by=RECORD_KEYS, resamples=0), reps=reps)
        with_ci = timed(lambda: pck_table(records, SPAIR_ALPHAS, by=RECORD_KEYS), reps=reps)
        out[name] = {"pairs": CATEGORIES * per_category, "records": len(records),
                     "table_without_intervals_s": round(plain["best_s"], 3),
                     "table_with_intervals_s": round(with_ci["best_s"], 3),
                     "bootstrap_s_per_table": round(with_ci["best_s"] - plain["best_s"], 3)}
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
