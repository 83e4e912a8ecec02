"""Matching your own images with the paper's fused features: the library's one-call entry points."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .datasets.pairs import Pair
from .evaluation import Method, pair_features
from .geometry import DINO_PATCH, map_keypoints, unmap_keypoints
from .matching import match_keypoints
from .profiles import Run, resolve


def match_points(image_a: str | Path, image_b: str | Path, points, run: Run | None = None,
                 alpha: float = 0.5) -> np.ndarray:
    """Where the (x, y) ``points`` of image A (its pixels) land in image B (its pixels).

    Fused SD + DINOv2 descriptors (co-PCA on the pair, α on SD, PROTOCOL §3, §5) matched by
    nearest neighbour (§6); predictions are cell centres, so their precision is one 14-px cell of
    the 14·G frame. ``run`` defaults to the paper profile (real weights, G = 60); features are
    cached per image like everywhere else.
    """
    run = run or resolve("paper", progress=False)
    sizes = []
    for path in (image_a, image_b):
        with Image.open(path) as image:
            sizes.append(image.size)
    frame = DINO_PATCH * run.grid
    pair = Pair("user", "user", Path(image_a), Path(image_b), sizes[0], sizes[1], np.zeros((0, 2)), np.zeros((0, 2)),
                np.zeros(0, bool), 1.0)
    method = Method("Fuse", pca_dim=run.pca_dim, alpha=alpha)
    features = pair_features(pair, {"fuse": method}, run.grid, run.sd_features, run.dino_features)
    src = map_keypoints(points, *sizes[0], frame)
    predicted = match_keypoints(*features.descriptors(method), src, run.grid, frame)
    return unmap_keypoints(predicted, *sizes[1], frame)
