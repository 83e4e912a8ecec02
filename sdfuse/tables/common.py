"""One function per supplementary table, each returning a tidy DataFrame from cached features.

Long format (DESIGN "Results are artifacts"): setting, method, dataset, alpha, aggregate,
category, value (PCK in %) and ci_low, ci_high (its bootstrap interval, pairs resampled within
categories, :mod:`sdfuse.bootstrap`; ``resamples`` sets their number, 0 switches them off).
Aggregate rows have category "all"; per-category rows have aggregate "per_category". Every SPair
table reuses one extraction per unique image. Each table carries the records it was computed
from (:mod:`sdfuse.records`), which :func:`sdfuse.report.save_results` writes next to its CSV.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import RESAMPLES
from .datasets import Pair
from .datasets.cub import CUB_ALPHAS, load_cub
from .datasets.pfpascal import PF_PASCAL_ALPHAS, load_pfpascal
from .datasets.tss import TSS_PAIR_FOLDERS, load_tss
from .dense import FORMS, evaluate_tss, tss_summary
from .dino_variants import BilateralFilter
from .errors import ConfigError
from .evaluation import REFERENCE_SUM_BUG, Method, evaluate
from .fusion import STRATEGIES
from .metrics import RECORD_KEYS, SPAIR_ALPHAS, pck_table
from .outcomes import outcome_records
from .paper import TABLE1_SUBSETS, TABLE2_PCK, subset_label
from .profiles import Run
from .records import attach, attached


def _prefill(run: Run, pairs: list[Pair]) -> None:
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    run.sd_features.prefill(images, progress=run.progress)
    run.dino_features.prefill(images, progress=run.progress)


def spair_pairs_with_features(run: Run) -> list[Pair]:
    """The run's SPair-71k pairs, with the features of every unique image in the cache."""
    pairs = run.spair_pairs()
    _prefill(run, pairs)
    return pairs


def keypoint_pck(run: Run, pairs: list[Pair], rows: dict[str, tuple[str, Method]], alphas, dataset: str,
                 resamples: int = RESAMPLES) -> pd.DataFrame:
    """PCK of labelled methods on keypoint pairs whose features are cached: ``rows`` maps an id to
    (setting label, method); the table carries its keypoint records (:mod:`sdfuse.records`)."""
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


def table1(run: Run, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 1 (UNet layers): 7 subsets of layers {2, 5, 8} × {SD, Fuse} × PCK@{0.01, 0.05, 0.10}."""
    rows = {f"{kind} {subset_label(s)}": (subset_label(s), Method(kind, sd_layers=s, pca_dim=run.pca_dim))
            for s in TABLE1_SUBSETS for kind in ("SD", "Fuse")}
    return spair_pck(run, rows, resamples=resamples)


def table2(run: Run, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 2 (reduction): co-PCA with d per layer from the profile's sweep (AMBIG-4), SD and Fuse.

    Settings carry the paper's row labels ("PCA 384", "PCA 256", "PCA 128"); the ``pca_dim``
    column gives the d actually used (the same in the paper profile, scaled down in smoke). The
    "projection" row (ODISE's trained heads, PROTOCOL §3.3) is computed when the run has the ODISE
    checkpoint (``captioner_checkpoint``); otherwise it is absent.
    """
    labels = [label for label in TABLE2_PCK if label.startswith("PCA")]
    rows = {f"{kind} {label}": (label, Method(kind, pca_dim=d))
            for label, d in zip(labels, run.pca_sweep) for kind in ("SD", "Fuse")}
    if run.projection_features is not None:
        rows |= {f"{kind} projection": ("projection", Method(kind, reduction="projection")) for kind in ("SD", "Fuse")}
    table = spair_pck(run, rows, resamples=resamples)
    table.insert(3, "pca_dim", table["setting"].map(dict(zip(labels, run.pca_sweep))).astype("Int64"))
    return table


def table3(run: Run, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 3 (fusion strategy): the four intended operations (PROTOCOL §5.4) plus what the
    reference code's sum modes really compute (``*_reference`` rows, AMBIG-8)."""
    rows = {s: (s, Method("Fuse", pca_dim=run.pca_dim, fusion=s)) for s in STRATEGIES + tuple(REFERENCE_SUM_BUG)}
    return spair_pck(run, rows, resamples=resamples)


def alpha_sweep(run: Run, alphas=tuple(np.round(np.linspace(0, 1, 11), 2)), resamples: int = RESAMPLES) -> pd.DataFrame:
    """PCK of the fusion for each weight α on SD (supp. Fig. 1's curve; α = 0: DINO, α = 1: SD)."""
    rows = {f"{a:.2f}": (f"α={a:.2f}", Method("Fuse", pca_dim=run.pca_dim, alpha=float(a))) for a in alphas}
    table = spair_pck(run, rows, resamples=resamples)
    table.insert(3, "fusion_alpha", table["setting"].str.removeprefix("α=").astype(float))
    return table


def outcomes(run: Run, alpha: float = 0.5) -> pd.DataFrame:
    """Per-keypoint records of SD, DINO and Fuse for supp. Tables 6, 7 and Fig. 2 (PROTOCOL §10)."""
    methods = {"SD": Method("SD", pca_dim=run.pca_dim), "DINO": Method("DINO"),
               "Fuse": Method("Fuse", pca_dim=run.pca_dim, alpha=alpha)}
    pairs = spair_pairs_with_features(run)
    return outcome_records(pairs, methods, run.grid, run.sd_features, run.dino_features, progress=run.progress)


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
    "Avg." weighted by pair folders, in each of ``tss_forms`` (:data:`sdfuse.dense.FORMS`:
    ``paper``, ``reference`` = the released script, ``raw_l2``; AMBIG-11) in the ``form`` column.
    TSS intervals resample pair folders within subsets. Records: ``keypoints`` (SPair-71k and
    PF-Pascal) and ``tss_samples``.
    """
    methods = table5_methods(run, bilateral, ensemble_blocks)
    rows = {name: (name, method) for name, method in methods.items()}
    spair = keypoint_pck(run, spair_pairs_with_features(run), rows, SPAIR_ALPHAS, "SPair-71k", resamples)
    pascal_pairs = load_pfpascal(run.pfpascal_root, listed_visible=pfpascal_listed_visible)
    _prefill(run, pascal_pairs)
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


def table8(run: Run, classes: tuple[int, ...] = (1, 2, 3), fusion_alphas=(0.5, 0.8),
           resamples: int = RESAMPLES) -> pd.DataFrame:
    """Supp. Table 8: CUB-200 under the ASIC protocol (PROTOCOL §9): DINOv2, SD and Fuse at two α.

    Each 256-px crop is the image (upsampled to the SD and DINO inputs, AMBIG-13); PCK at α·256,
    all ordered pairs within a class; ASIC pools keypoints over all pairs ("keypoint_pooled"), the
    mean over the classes is the "category_mean" row. Intervals resample pairs within classes;
    pairs share images, so they understate the uncertainty of a new draw of images.
    """
    methods = {"DINOv2": Method("DINO"), "SD": Method("SD", pca_dim=run.pca_dim)}
    methods |= {f"Fuse α={a:g}": Method("Fuse", pca_dim=run.pca_dim, alpha=a) for a in fusion_alphas}
    pairs = load_cub(run.cub_root, tuple(classes), cache_dir=run.derived_dir)
    _prefill(run, pairs)
    return keypoint_pck(run, pairs, {name: (name, m) for name, m in methods.items()}, CUB_ALPHAS, "CUB-200", resamples)


def table5_headline(table: pd.DataFrame, form: str = "paper") -> pd.DataFrame:
    """One value (and its interval) per (setting, dataset, alpha) of :func:`table5`: mean of
    per-category PCK for the keypoint datasets, per-image mean (subsets) and pair-folder-weighted
    mean (Avg.) for TSS."""
    keep = table["aggregate"].isin(["category_mean", "per_image_mean", "pair_folder_weighted"])
    rows = table[keep & (table["category"] == "all") & (table["form"] == form)]
    return rows[["setting", "method", "dataset", "alpha", "value", "ci_low", "ci_high"]].reset_index(drop=True)
