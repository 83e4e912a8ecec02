"""Supp. Table 8: CUB-200-2011 under the ASIC protocol (PROTOCOL §9).
"""
from __future__ import annotations

import pandas as pd

from ..data.datasets.cub import CUB_ALPHAS, load_cub
from ..evaluation.pair_features import Method
from ..profiles.runs import Run
from ..protocol.bootstrap import RESAMPLES
from .common import keypoint_pck, prefill_features


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
    prefill_features(run, pairs)
    return keypoint_pck(run, pairs, {name: (name, m) for name, m in methods.items()}, CUB_ALPHAS, "CUB-200", resamples)
