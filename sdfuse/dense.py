"""Dense flow evaluation on TSS (FG3DCar, JODS, PASCAL) with the reference's conventions (PROTOCOL §8).

Each pair folder is evaluated in both directions. The two images are padded right/bottom to a
common size; the padded images are written once per folder under the run's derived-image cache
so that features are cached per image like everywhere else. Every target cell is matched to a
source cell; the cell flow is upsampled to pixels and PCK counts valid target pixels whose
end-point error is ≤ α · max(H, W) of the unpadded source.

Two forms are computed (AMBIG-11): ``paper`` matches the paper's descriptors (normalised fusion)
by cosine; ``reference`` does what the released TSS script does — raw features, raw
concatenation for the fusion, nearest neighbour by L2.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from .datasets.derived import cached_png, derived_key
from .datasets.pairs import Pair
from .datasets.tss import (TSSSample, dense_flow_to_image, flow_from_nn, pair_folder_counts, read_sample, tss_pck,
                           weighted_average)
from .evaluation import Method, pair_features
from .matching import dense_nearest
from .profiles import Run

FORMS = {"paper": "cosine", "reference": "l2"}
TSS_ALPHAS = (0.01, 0.05, 0.10, 0.15)


def reference_form(method: Method) -> Method:
    """The released TSS script's version of a method: the fusion is a raw concatenation (AMBIG-11)."""
    return replace(method, fusion="concat") if method.kind == "Fuse" else method


def _padded_paths(run: Run, sample: TSSSample, src: np.ndarray, trg: np.ndarray) -> tuple[Path, Path]:
    """The padded pair images as PNG files, keyed by each source's content and the padded size."""
    folder = run.derived_dir / "tss" / sample.subset / sample.pair_dir
    paths = []
    for source, array in ((sample.src_image, src), (sample.trg_image, trg)):
        key = derived_key([source], {"derivation": "tss-pad-right-bottom-1", "padded_hw": list(array.shape[:2])})
        paths.append(cached_png(folder / f"{source.stem}_padded-{key}.png", lambda array=array: Image.fromarray(array)))
    return paths[0], paths[1]


def evaluate_tss(samples: list[TSSSample], methods: dict[str, Method], run: Run,
                 true_division: bool = False) -> pd.DataFrame:
    """One row per (sample, method, form, α): the sample's PCK in % (PROTOCOL §8).

    ``true_division`` replicates the reference's float source row (``torch.div`` under torch ≥ 1.8).
    """
    variants = {(name, form): (method if form == "paper" else reference_form(method))
                for name, method in methods.items() for form in FORMS}
    rows = []
    for sample in tqdm(samples, desc="TSS samples", unit="sample", disable=not run.progress):
        data = read_sample(sample)
        src_path, trg_path = _padded_paths(run, sample, data.src, data.trg)
        pair = Pair(f"{sample.subset}/{sample.pair_dir}/{sample.direction}", sample.subset, src_path, trg_path,
                    data.src.shape[1::-1], data.trg.shape[1::-1], np.zeros((0, 2)), np.zeros((0, 2)),
                    np.zeros(0, bool), 1.0)
        features = pair_features(pair, variants, run.grid,
                                 run.sd_features, run.dino_features)
        for (name, form), method in variants.items():
            nearest = dense_nearest(*features.descriptors(method), metric=FORMS[form])
            flow = dense_flow_to_image(flow_from_nn(nearest, run.grid, true_division=true_division), data.trg.shape[:2])
            for alpha in TSS_ALPHAS:
                rows.append({"subset": sample.subset, "pair_dir": sample.pair_dir, "direction": sample.direction,
                             "method": name, "form": form, "alpha": alpha,
                             "value": tss_pck(flow, data.flow, data.mask, data.l_pck, alpha)})
    return pd.DataFrame(rows)


def tss_summary(per_sample: pd.DataFrame, samples: list[TSSSample], folder_counts: dict[str, int] | None = None) -> pd.DataFrame:
    """Per-image mean per subset (AMBIG-12) and "Avg." weighted by pair folders per subset (PROTOCOL §16).

    ``folder_counts`` defaults to the evaluated samples' own counts (the real dataset's are 195/81/124).
    """
    counts = folder_counts or pair_folder_counts(samples)
    means = per_sample.groupby(["method", "form", "alpha", "subset"], sort=False)["value"].mean().reset_index()
    averages = [{"method": m, "form": f, "alpha": a, "subset": "Avg.",
                 "value": weighted_average(dict(zip(g["subset"], g["value"])), counts)}
                for (m, f, a), g in means.groupby(["method", "form", "alpha"], sort=False)]
    return pd.concat([means, pd.DataFrame(averages)], ignore_index=True)
