"""What every table shares: the run's pairs with their features cached, and PCK of labelled methods.

Each table module of :mod:`sdfuse.tables` returns a tidy DataFrame from cached features. Long
format (DESIGN "Results are artifacts"): setting, method, dataset, alpha, aggregate, category,
value (PCK in %) and ci_low, ci_high (its bootstrap interval, pairs resampled within categories,
:mod:`sdfuse.protocol.bootstrap`; ``resamples`` sets their number, 0 switches them off).
Aggregate rows have category "all"; per-category rows have aggregate "per_category". Every SPair
table reuses one extraction per unique image. Each table carries the records it was computed
from (:mod:`sdfuse.evaluation.records`), which :func:`sdfuse.book.pages.save_results` writes
next to its CSV.
"""
from __future__ import annotations

import pandas as pd

from ..data.datasets import Pair
from ..errors import ConfigError
from ..evaluation.keypoints import evaluate
from ..evaluation.pair_features import Method
from ..evaluation.records import attach
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from ..protocol.metrics import RECORD_KEYS, SPAIR_ALPHAS, pck_table


def prefill_features(run: Run, pairs: list[Pair]) -> None:
    """Put the SD and DINOv2 features of every unique image of ``pairs`` in the run's cache."""
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    run.sd_features.prefill(images, progress=run.progress)
    run.dino_features.prefill(images, progress=run.progress)


def spair_pairs_with_features(run: Run) -> list[Pair]:
    """The run's SPair-71k pairs, with the features of every unique image in the cache."""
    pairs = run.spair_pairs()
    prefill_features(run, pairs)
    return pairs


def keypoint_pck(run: Run, pairs: list[Pair], rows: dict[str, tuple[str, Method]], alphas, dataset: str,
                 resamples: int = RESAMPLES) -> pd.DataFrame:
    """PCK of labelled methods on keypoint pairs whose features are cached: ``rows`` maps an id to
    (setting label, method); the table carries its keypoint records (:mod:`sdfuse.evaluation.records`)."""
    labels = {key: (setting, method.kind) for key, (setting, method) in rows.items()}
    if len(set(labels.values())) < len(labels):
        raise ConfigError(f"two rows share a setting label and method kind: {sorted(labels.values())}")
    methods = {key: method for key, (_, method) in rows.items()}
    projection = run.projection_features if any(m.reduction == "projection" for m in methods.values()) else None
    records = evaluate(pairs, methods, run.grid, run.sd_features, run.dino_features, progress=run.progress,
                       projection=projection)
    keys = records.pop("method")
    records.insert(0, "dataset", dataset)
    records.insert(1, "setting", keys.map(lambda k: labels[k][0]))
    records.insert(2, "method", keys.map(lambda k: labels[k][1]))
    table = pck_table(records, alphas, by=RECORD_KEYS, resamples=resamples)
    table = table[["setting", "method", "dataset"] + [c for c in table.columns if c not in RECORD_KEYS]]
    return attach(table, keypoints=records)


def spair_pck(run: Run, rows: dict[str, tuple[str, Method]], pairs: list[Pair] | None = None,
              resamples: int = RESAMPLES) -> pd.DataFrame:
    """PCK of labelled methods on SPair-71k: ``rows`` maps an id to (setting label, method)."""
    pairs = pairs if pairs is not None else spair_pairs_with_features(run)
    return keypoint_pck(run, pairs, rows, SPAIR_ALPHAS, "SPair-71k", resamples)
