"""Reduced-precision feature extraction checked against float32 (PROTOCOL §14, "Precision").

The reference runs everything in float32. Extracting in bfloat16 or float16 is faster, and the
protocol accepts it when, on a SAMPLE = 20 subset, the PCK moves by at most 0.2 points and at least
99 % of the nearest neighbours stay the same. :func:`precision_parity` runs supp. Table 1's default
rows (SD and Fuse on layers 2+5+8) on a profile's SPair-71k pairs once per dtype and reports both.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..evaluation.keypoints import evaluate
from ..evaluation.pair_features import Method
from ..protocol.metrics import AGGREGATES, SPAIR_ALPHAS, pck_table
from .paper import TABLE1_DEFAULT

MAX_PCK_DELTA = 0.2
"""Largest accepted |PCK(candidate) − PCK(reference)| in PCK points (PROTOCOL §14)."""
MIN_IDENTICAL_NN = 0.99
"""Smallest accepted fraction of keypoints whose matched target token is unchanged (PROTOCOL §14)."""


def table1_default_methods(pca_dim: int) -> dict[str, Method]:
    """Supp. Table 1's last row, the paper's default: SD and Fuse on layers 2+5+8."""
    return {"SD": Method("SD", sd_layers=TABLE1_DEFAULT, pca_dim=pca_dim),
            "Fuse": Method("Fuse", sd_layers=TABLE1_DEFAULT, pca_dim=pca_dim)}


def compare_records(reference: pd.DataFrame, candidate: pd.DataFrame, alphas=SPAIR_ALPHAS) -> dict:
    """PCK deltas and nearest-neighbour agreement of two evaluations of the same pairs and methods.

    Both frames come from :func:`sdfuse.evaluation.keypoints.evaluate`; rows are matched on (method, pair, kp).
    """
    keys = ["method", "pair", "kp"]
    merged = reference.merge(candidate, on=keys, suffixes=("_ref", "_cand"), validate="one_to_one")
    if len(merged) != len(reference) or len(merged) != len(candidate):
        raise ValueError("the two evaluations do not cover the same keypoints")
    out = {}
    for method, rows in merged.groupby("method", sort=False):
        ref = pck_table(reference[reference["method"] == method], alphas, resamples=0)
        cand = pck_table(candidate[candidate["method"] == method], alphas, resamples=0)
        ref, cand = ref[ref["category"] == "all"], cand[cand["category"] == "all"]
        both = ref.merge(cand, on=["alpha", "aggregate"], suffixes=("_ref", "_cand"))
        pck = [{"alpha": float(r.alpha), "aggregate": r.aggregate, "reference": float(r.value_ref),
                "candidate": float(r.value_cand), "delta": float(r.value_cand - r.value_ref)}
               for r in both.itertuples()]
        identical = float(np.mean(rows["pred_index_ref"].to_numpy() == rows["pred_index_cand"].to_numpy()))
        out[method] = {"keypoints": int(len(rows)), "identical_nn_fraction": identical,
                       "max_abs_pck_delta": max(abs(p["delta"]) for p in pck), "pck": pck}
    return out


def precision_parity(profile: str = "smoke", reference_dtype: str = "float32", candidate_dtype: str = "bfloat16",
                     *, reference_cache: str | os.PathLike | None = None,
                     candidate_cache: str | os.PathLike | None = None, **overrides) -> dict:
    """Table 1's default SD and Fuse rows with features extracted in two dtypes, compared.

    ``overrides`` go to :func:`sdfuse.profiles.resolve` (e.g. ``pairs_per_category``, ``device``).
    Each side uses its own cache folder when given (the default: the profile's cache, where the
    dtypes have separate entries anyway). Returns a JSON-ready dict::

        {"profile", "reference_dtype", "candidate_dtype", "pairs", "images",
         "forward_passes": {"reference"|"candidate": {"sd": n, "dino": n}} (extractions done now),
         "methods": {"SD"|"Fuse": {"keypoints", "identical_nn_fraction" (0–1),
                                   "max_abs_pck_delta" (PCK points),
                                   "pck": [{"alpha", "aggregate", "reference", "candidate", "delta"}]}},
         "min_identical_nn_fraction", "max_abs_pck_delta",
         "tolerance": {"max_abs_pck_delta": 0.2, "min_identical_nn_fraction": 0.99},
         "within_tolerance": bool}

    PCK values are in %, deltas are candidate − reference in PCK points, over the four aggregates
    of :data:`sdfuse.protocol.metrics.AGGREGATES` at α ∈ {0.01, 0.05, 0.10}.
    """
    from ..profiles.runs import resolve

    overrides.setdefault("progress", False)
    records, passes, pairs, images = {}, {}, None, None
    for role, dtype, cache in (("reference", reference_dtype, reference_cache),
                               ("candidate", candidate_dtype, candidate_cache)):
        run = resolve(profile, dtype=dtype, cache_dir=cache, **overrides)
        if pairs is None:
            pairs = run.spair_pairs()
            images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
        passes[role] = {"sd": run.sd_features.prefill(images, progress=False),
                        "dino": run.dino_features.prefill(images, progress=False)}
        records[role] = evaluate(pairs, table1_default_methods(run.pca_dim), run.grid, run.sd_features,
                                 run.dino_features, progress=False)
    methods = compare_records(records["reference"], records["candidate"])
    worst_nn = min(m["identical_nn_fraction"] for m in methods.values())
    worst_delta = max(m["max_abs_pck_delta"] for m in methods.values())
    return {"profile": profile, "reference_dtype": reference_dtype, "candidate_dtype": candidate_dtype,
            "pairs": len(pairs), "images": len(images), "forward_passes": passes,
            "aggregates": list(AGGREGATES), "methods": methods,
            "min_identical_nn_fraction": worst_nn, "max_abs_pck_delta": worst_delta,
            "tolerance": {"max_abs_pck_delta": MAX_PCK_DELTA, "min_identical_nn_fraction": MIN_IDENTICAL_NN},
            "within_tolerance": bool(worst_delta <= MAX_PCK_DELTA and worst_nn >= MIN_IDENTICAL_NN)}
