"""Supp. Table 5 (DINOv2 variants) on SPair-71k, PF-Pascal and TSS (PROTOCOL §4, §7, §8, AMBIG-5).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.datasets.pfpascal import PF_PASCAL_ALPHAS, load_pfpascal
from ..data.datasets.tss import load_tss
from ..evaluation.pair_features import Method
from ..evaluation.records import attach, attached
from ..evaluation.tss import FORMS, evaluate_tss, tss_summary
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from ..protocol.dino_variants import BilateralFilter
from ..protocol.flow import TSS_PAIR_FOLDERS
from ..protocol.metrics import SPAIR_ALPHAS
from .common import keypoint_pck, prefill_features, spair_pairs_with_features


def table5_methods(run: Run, bilateral: BilateralFilter = BilateralFilter(), ensemble_blocks=(9, 11)) -> dict[str, Method]:
    """Supp. Table 5's rows: DINOv2, Filter-ViT and Ensemble-ViT (both reconstructed, AMBIG-5), Fuse."""
    return {"DINOv2": Method("DINO"), "Filter": Method("DINO", dino_filter=bilateral),
            "Ensemble": Method("DINO", dino_blocks=tuple(ensemble_blocks)), "Fuse": Method("Fuse", pca_dim=run.pca_dim)}


def table5(run: Run, bilateral: BilateralFilter = BilateralFilter(), ensemble_blocks=(9, 11),
           tss_forms: tuple[str, ...] = tuple(FORMS), pfpascal_listed_visible: bool = False,
           resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 5 (DINOv2 variants) on SPair-71k, PF-Pascal and TSS.

    SPair-71k and PF-Pascal rows as the keypoint tables (PF-Pascal: image-size threshold, α ∈
    {0.05, 0.10, 0.15}, all 299 pairs; ``pfpascal_listed_visible`` counts listed (−1, −1) entries
    as the reference does, AMBIG-23); TSS rows per subset (mean over images, PCK@α with ≤) and
    "Avg." weighted by pair folders, in each of ``tss_forms`` (:data:`sdfuse.evaluation.tss.FORMS`:
    ``paper``, ``reference`` = the released script, ``raw_l2``; AMBIG-11) in the ``form`` column.
    TSS intervals resample pair folders within subsets. Records: ``keypoints`` (SPair-71k and
    PF-Pascal) and ``tss_samples``.
    """
    methods = table5_methods(run, bilateral, ensemble_blocks)
    rows = {name: (name, method) for name, method in methods.items()}
    spair = keypoint_pck(run, spair_pairs_with_features(run), rows, SPAIR_ALPHAS, "SPair-71k", resamples)
    pascal_pairs = load_pfpascal(run.pfpascal_root, listed_visible=pfpascal_listed_visible)
    prefill_features(run, pascal_pairs)
    pascal = keypoint_pck(run, pascal_pairs, rows, PF_PASCAL_ALPHAS, "PF-Pascal", resamples)
    samples = load_tss(run.tss_root)
    counts = TSS_PAIR_FOLDERS if run.profile == "paper" else None   # synthetic TSS: its own folder counts
    per_sample = evaluate_tss(samples, methods, run, forms=tuple(tss_forms))
    tss = tss_summary(per_sample, samples, counts, resamples=resamples)
    tss = pd.DataFrame({"setting": tss["method"], "method": tss["method"].map(lambda name: methods[name].kind),
                        "dataset": "TSS/" + tss["subset"], "alpha": tss["alpha"],
                        "aggregate": np.where(tss["subset"] == "Avg.", "pair_folder_weighted", "per_image_mean"),
                        "category": "all", "value": tss["value"], "ci_low": tss["ci_low"], "ci_high": tss["ci_high"],
                        "form": tss["form"]})
    keypoints = pd.concat([spair, pascal], ignore_index=True).assign(form="paper")
    table = pd.concat([keypoints, tss], ignore_index=True)
    records = pd.concat([attached(spair)["keypoints"], attached(pascal)["keypoints"]], ignore_index=True)
    return attach(table, keypoints=records, tss_samples=per_sample)


def table5_headline(table: pd.DataFrame, form: str = "paper") -> pd.DataFrame:
    """One value (and its interval) per (setting, dataset, alpha) of :func:`table5`: mean of
    per-category PCK for the keypoint datasets, per-image mean (subsets) and pair-folder-weighted
    mean (Avg.) for TSS."""
    keep = table["aggregate"].isin(["category_mean", "per_image_mean", "pair_folder_weighted"])
    rows = table[keep & (table["category"] == "all") & (table["form"] == form)]
    return rows[["setting", "method", "dataset", "alpha", "value", "ci_low", "ci_high"]].reset_index(drop=True)
