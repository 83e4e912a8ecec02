"""One function per supplementary table, each returning a tidy DataFrame from cached features.

Long format (DESIGN "Results are artifacts"): setting, method, dataset, alpha, aggregate,
category, value (PCK in %). Aggregate rows have category "all"; per-category rows have
aggregate "per_category". Every SPair table reuses one extraction per unique image.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .datasets import Pair
from .datasets.cub import CUB_ALPHAS, load_cub
from .datasets.pfpascal import PF_PASCAL_ALPHAS, load_pfpascal
from .datasets.tss import TSS_PAIR_FOLDERS, load_tss
from .dense import evaluate_tss, tss_summary
from .dino_variants import BilateralFilter
from .evaluation import REFERENCE_SUM_BUG, Method, evaluate
from .fusion import STRATEGIES
from .metrics import SPAIR_ALPHAS, pck_table
from .outcomes import outcome_records
from .paper import TABLE1_SUBSETS, TABLE2_PCK, subset_label
from .profiles import Run


def spair_pairs_with_features(run: Run) -> list[Pair]:
    """The run's SPair-71k pairs, with the features of every unique image in the cache."""
    pairs = run.spair_pairs()
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    run.sd_features.prefill(images, progress=run.progress)
    run.dino_features.prefill(images, progress=run.progress)
    return pairs


def spair_pck(run: Run, rows: dict[str, tuple[str, Method]], pairs: list[Pair] | None = None) -> pd.DataFrame:
    """PCK of labelled methods on SPair-71k: ``rows`` maps an id to (setting label, method)."""
    pairs = pairs if pairs is not None else spair_pairs_with_features(run)
    methods = {key: method for key, (_, method) in rows.items()}
    projection = run.projection_features if any(m.reduction == "projection" for m in methods.values()) else None
    records = evaluate(pairs, methods, run.grid, run.sd_features, run.dino_features, progress=run.progress,
                       projection=projection)
    table = pck_table(records, SPAIR_ALPHAS, by=("method",))
    keys = table.pop("method")
    table.insert(0, "setting", keys.map(lambda k: rows[k][0]))
    table.insert(1, "method", keys.map(lambda k: rows[k][1].kind))
    table.insert(2, "dataset", "SPair-71k")
    return table


def table1(run: Run) -> pd.DataFrame:
    """Supp. Table 1 (UNet layers): 7 subsets of layers {2, 5, 8} × {SD, Fuse} × PCK@{0.01, 0.05, 0.10}."""
    rows = {f"{kind} {subset_label(s)}": (subset_label(s), Method(kind, sd_layers=s, pca_dim=run.pca_dim))
            for s in TABLE1_SUBSETS for kind in ("SD", "Fuse")}
    return spair_pck(run, rows)


def table2(run: Run) -> pd.DataFrame:
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
    table = spair_pck(run, rows)
    table.insert(3, "pca_dim", table["setting"].map(dict(zip(labels, run.pca_sweep))).astype("Int64"))
    return table


def table3(run: Run) -> pd.DataFrame:
    """Supp. Table 3 (fusion strategy): the four intended operations (PROTOCOL §5.4) plus what the
    reference code's sum modes really compute (``*_reference`` rows, AMBIG-8)."""
    rows = {s: (s, Method("Fuse", pca_dim=run.pca_dim, fusion=s)) for s in STRATEGIES + tuple(REFERENCE_SUM_BUG)}
    return spair_pck(run, rows)


def alpha_sweep(run: Run, alphas=tuple(np.round(np.linspace(0, 1, 11), 2))) -> pd.DataFrame:
    """PCK of the fusion for each weight α on SD (supp. Fig. 1's curve; α = 0: DINO, α = 1: SD)."""
    rows = {f"{a:.2f}": (f"α={a:.2f}", Method("Fuse", pca_dim=run.pca_dim, alpha=float(a))) for a in alphas}
    table = spair_pck(run, rows)
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


def _keypoint_pck(run: Run, pairs: list[Pair], methods: dict[str, Method], alphas, dataset: str) -> pd.DataFrame:
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    run.sd_features.prefill(images, progress=run.progress)
    run.dino_features.prefill(images, progress=run.progress)
    records = evaluate(pairs, methods, run.grid, run.sd_features, run.dino_features, progress=run.progress)
    table = pck_table(records, alphas, by=("method",))
    table.insert(0, "setting", table.pop("method"))
    table.insert(1, "method", table["setting"].map(lambda name: methods[name].kind))
    table.insert(2, "dataset", dataset)
    return table


def table5(run: Run, bilateral: BilateralFilter = BilateralFilter(), ensemble_blocks=(9, 11),
           tss_true_division: bool = False) -> pd.DataFrame:
    """Supp. Table 5 (DINOv2 variants) on SPair-71k, PF-Pascal and TSS.

    SPair-71k and PF-Pascal rows as the keypoint tables (PF-Pascal: image-size threshold, α ∈
    {0.05, 0.10, 0.15}, all 299 pairs); TSS rows per subset (mean over images, PCK@α with ≤) and
    "Avg." weighted by pair folders, each in the ``paper`` and ``reference`` forms (AMBIG-11) in
    the ``form`` column.
    """
    methods = table5_methods(run, bilateral, ensemble_blocks)
    spair = _keypoint_pck(run, run.spair_pairs(), methods, SPAIR_ALPHAS, "SPair-71k")
    pascal = _keypoint_pck(run, load_pfpascal(run.pfpascal_root), methods, PF_PASCAL_ALPHAS, "PF-Pascal")
    samples = load_tss(run.tss_root)
    counts = TSS_PAIR_FOLDERS if not run.is_smoke else None
    tss = tss_summary(evaluate_tss(samples, methods, run, tss_true_division), samples, counts)
    tss = pd.DataFrame({"setting": tss["method"], "method": tss["method"].map(lambda name: methods[name].kind),
                        "dataset": "TSS/" + tss["subset"], "alpha": tss["alpha"],
                        "aggregate": np.where(tss["subset"] == "Avg.", "pair_folder_weighted", "per_image_mean"),
                        "category": "all", "value": tss["value"], "form": tss["form"]})
    keypoints = pd.concat([spair, pascal], ignore_index=True).assign(form="paper")
    return pd.concat([keypoints, tss], ignore_index=True)


def table8(run: Run, classes: tuple[int, ...] = (1, 2, 3), fusion_alphas=(0.5, 0.8)) -> pd.DataFrame:
    """Supp. Table 8: CUB-200 under the ASIC protocol (PROTOCOL §9): DINOv2, SD and Fuse at two α.

    Each 256-px crop is the image (upsampled to the SD and DINO inputs, AMBIG-13); PCK at α·256,
    all ordered pairs within a class; ASIC pools keypoints over all pairs ("keypoint_pooled"), the
    mean over the classes is the "category_mean" row.
    """
    methods = {"DINOv2": Method("DINO"), "SD": Method("SD", pca_dim=run.pca_dim)}
    methods |= {f"Fuse α={a:g}": Method("Fuse", pca_dim=run.pca_dim, alpha=a) for a in fusion_alphas}
    pairs = load_cub(run.cub_root, tuple(classes), cache_dir=run.derived_dir)
    return _keypoint_pck(run, pairs, methods, CUB_ALPHAS, "CUB-200")


def table5_headline(table: pd.DataFrame, form: str = "paper") -> pd.DataFrame:
    """One value per (setting, dataset, alpha) of :func:`table5`: mean of per-category PCK for the
    keypoint datasets, per-image mean (subsets) and pair-folder-weighted mean (Avg.) for TSS."""
    keep = table["aggregate"].isin(["category_mean", "per_image_mean", "pair_folder_weighted"])
    rows = table[keep & (table["category"] == "all") & (table["form"] == form)]
    return rows[["setting", "method", "dataset", "alpha", "value"]].reset_index(drop=True)
