"""How much the reference's randomised co-PCA moves the headline numbers (PROTOCOL §3.1, AMBIG-17).

The released code reduces every SD layer with ``torch.pca_lowrank(q = d, niter = 2)``, a randomised
SVD drawn from the global RNG, seeded once per run: its numbers depend on the seed and on the pairs
evaluated before. :func:`seed_spread` evaluates Table 2's default rows (SD and Fuse, d = the run's
``pca_dim``) with the exact co-PCA and, for each seed, as one reference run would
(``Method(co_pca="lowrank", co_pca_seed=s)``), on the same pairs; :func:`spread_summary` reduces it
to the spread across seeds beside the exact value.
"""
from __future__ import annotations

import pandas as pd

from ..evaluation.keypoints import evaluate
from ..evaluation.pair_features import Method
from ..profiles.runs import Run
from ..protocol.metrics import SPAIR_ALPHAS, pck_table
from .common import spair_pairs_with_features

SEEDS = (42, 0, 1, 2, 3)
"""The reference's seed (42) and four others."""
KINDS = ("SD", "Fuse")


def _methods(pca_dim: int, seeds) -> dict[str, tuple[str, str, int | None, Method]]:
    rows = {f"{kind} exact": (kind, "exact", None, Method(kind, pca_dim=pca_dim)) for kind in KINDS}
    rows |= {f"{kind} lowrank seed {seed}": (kind, "lowrank", seed,
                                             Method(kind, pca_dim=pca_dim, co_pca="lowrank", co_pca_seed=seed))
             for seed in seeds for kind in KINDS}
    return rows


def seed_spread(run: Run, seeds=SEEDS, pairs=None) -> pd.DataFrame:
    """PCK of SD and Fuse (d = ``run.pca_dim``) with the exact co-PCA and with the reference's
    randomised co-PCA under each seed, on the run's SPair-71k pairs (or ``pairs``).

    Tidy rows as :func:`sdfuse.tables.common.spair_pck` (method, dataset, alpha, aggregate, category, value)
    with ``co_pca`` ("exact" or "lowrank"), ``seed`` (empty for exact) and ``identical_nn``: the share
    of keypoints whose matched target cell equals the exact method's (1 for the exact rows). Every seed
    is one reference run over all pairs, so its draws follow the pairs' order.
    """
    pairs = pairs if pairs is not None else spair_pairs_with_features(run)
    rows = _methods(run.pca_dim, seeds)
    device = "cuda" if str(run.sd.device).startswith("cuda") else "cpu"
    records = evaluate(pairs, {name: row[3] for name, row in rows.items()}, run.grid, run.sd_features,
                       run.dino_features, progress=run.progress, co_pca_device=device)
    matched = records.set_index(["method", "pair", "kp"])["pred_index"]
    identical = {name: float((matched[name] == matched[f"{kind} exact"]).mean())
                 for name, (kind, *_) in rows.items()}
    table = pck_table(records, SPAIR_ALPHAS, by=("method",))
    names = table.pop("method")
    table.insert(0, "method", names.map(lambda n: rows[n][0]))
    table.insert(1, "co_pca", names.map(lambda n: rows[n][1]))
    table.insert(2, "seed", names.map(lambda n: rows[n][2]).astype("Int64"))
    table.insert(3, "dataset", "SPair-71k")
    table["identical_nn"] = names.map(identical)
    return table


def spread_summary(table: pd.DataFrame, aggregate: str = "category_mean") -> pd.DataFrame:
    """Per method and α: the exact PCK, the randomised PCK's min, max, mean and spread (max − min) across
    seeds, whether the exact value lies within [min, max], and the mean identical-NN share."""
    rows = table[(table["aggregate"] == aggregate) & (table["category"] == "all")]
    exact = rows[rows["co_pca"] == "exact"].set_index(["method", "alpha"])["value"]
    lowrank = rows[rows["co_pca"] == "lowrank"].groupby(["method", "alpha"])
    out = lowrank["value"].agg(["min", "max", "mean"]).rename(columns=lambda c: f"lowrank_{c}")
    out.insert(0, "exact", exact)
    out.insert(1, "seeds", lowrank["seed"].nunique())
    out["spread"] = out["lowrank_max"] - out["lowrank_min"]
    out["exact_within_seeds"] = (out["exact"] >= out["lowrank_min"]) & (out["exact"] <= out["lowrank_max"])
    out["identical_nn"] = lowrank["identical_nn"].mean()
    return out.reset_index()
