"""Matching your own images: :func:`match`, :func:`describe`, and what ``sdfuse match`` draws.

Images are paths, PIL images or arrays. A path is used as it is; an in-memory image is stored
once as a PNG under the run's derived-image cache (named by the digest of its pixels), so that its
features are cached per image like every dataset image (:mod:`sdfuse.features.cache`). Both
functions run the paper profile by default (real weights, G = 60); pass ``profile="smoke"`` to
try them with tiny random models, or any other option of :func:`sdfuse.profiles.resolve`.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from .data.datasets.derived import cached_png
from .data.datasets.pairs import Pair
from .data.images import check_size, open_rgb, to_rgb
from .errors import ConfigError, DatasetError, WeightsNotFoundError
from .evaluation.pair_features import Method, PairFeatures, pair_features
from .profiles.runs import Run, resolve
from .protocol.geometry import DINO_PATCH, map_keypoints, unmap_keypoints
from .protocol.matching import dense_nearest, match_keypoints

DEFAULT_PROFILE = "paper"
"""The profile :func:`match`, :func:`describe` and ``sdfuse match`` use when none is given."""
GRID_POINTS = 4
"""Points per side of the lattice drawn when no points are given."""


def run_for(run: Run | None = None, profile: str | None = None, **run_options) -> Run:
    """``run`` itself, else :func:`~sdfuse.profiles.resolve` of ``profile`` (default :data:`DEFAULT_PROFILE`)
    with the run parameters ``run_options`` (:data:`sdfuse.profiles.parameters.RUN_PARAMETERS`, checked there)."""
    if run is not None:
        if profile is not None or run_options:
            raise ConfigError("pass either run=... or profile/run options, not both")
        return run
    return resolve(profile or DEFAULT_PROFILE, **{"progress": False, **run_options})


def _array_image(array: np.ndarray, label: str) -> Image.Image:
    """(H, W), (H, W, 3) or (H, W, 4) uint8, or float in [0, 1], as a PIL image (alpha dropped later)."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ConfigError(f"{label}: an array must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ConfigError(f"{label}: a float array must hold finite values in [0, 1]; scale it, or pass uint8 "
                              f"values in [0, 255]")
        array = np.round(array * 255)
    elif array.dtype != np.uint8:
        raise ConfigError(f"{label}: arrays must be uint8 or float in [0, 1], got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array.astype(np.uint8)))


def image_file(image, run: Run, name: str = "") -> tuple[Path, tuple[int, int]]:
    """(path, (W, H)) of a path, PIL image or array, checked like every dataset image (:mod:`sdfuse.data.images`).

    A path must be a readable image file; an in-memory image is converted to 8-bit RGB and stored
    as ``<cache>/derived/inputs/<pixel digest>.png`` (:func:`sdfuse.data.datasets.derived.cached_png`:
    atomically, once, rewritten if damaged). ``name`` ("A", "B") labels the image in error messages.
    """
    label = f"image {name}" if name else "the image"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise DatasetError(f"{label}: {path} is not a file; pass the path of an image (JPEG, PNG, ...)")
        return path, open_rgb(path).size
    if isinstance(image, np.ndarray):
        image = _array_image(image, label)
    if not isinstance(image, Image.Image):
        raise ConfigError(f"{label} must be a path, a PIL image or a numpy array, got {type(image).__name__}")
    try:
        rgb = to_rgb(image, label)
    except OSError as error:           # a lazily opened file that turns out truncated or damaged
        raise DatasetError(f"{label} cannot be decoded ({error}); pass a complete image") from error
    check_size(rgb.size, label)
    digest = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    return cached_png(run.derived_dir / "inputs" / digest[:2] / f"{digest}.png", lambda: rgb), rgb.size


def check_points(points, size: tuple[int, int], name: str = "A") -> np.ndarray:
    """(K, 2) float (x, y) pixels of an image of ``size`` (W, H): finite, 0 ≤ x < W, 0 ≤ y < H, K ≥ 1."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"points must be (x, y) number pairs, got {points!r}") from None
    if array.size == 0 or array.ndim != 2 or array.shape[1] != 2:
        raise ConfigError(f"points must be a non-empty list of (x, y) pairs, got shape {array.shape}")
    width, height = size
    for k, (x, y) in enumerate(array):
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise ConfigError(f"point {k + 1} ({x:g}, {y:g}) is outside image {name} ({width}×{height} px): "
                              f"x must be in [0, {width}) and y in [0, {height})")
    return array


_NUMBER = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"
_POINT = re.compile(rf"^({_NUMBER}),({_NUMBER})$")


def parse_points(text: str) -> np.ndarray:
    """``"x,y;x,y;…"`` (pixels) as a (K, 2) array; anything else is a :class:`~sdfuse.errors.ConfigError`."""
    items = text.split(";")
    points = []
    for k, item in enumerate(items, start=1):
        found = _POINT.match(item)
        if not found:
            raise ConfigError(f"--points must be 'x,y;x,y;...' in pixels of image A (e.g. --points \"120,80;200,150\"); "
                              f"item {k} {item.strip()!r} is not two numbers")
        points.append((float(found[1]), float(found[2])))
    return np.array(points)


def grid_points(size: tuple[int, int], per_side: int = GRID_POINTS) -> np.ndarray:
    """A per_side × per_side lattice of cell centres over a W×H image, row by row."""
    width, height = size
    fractions = (np.arange(per_side) + 0.5) / per_side
    xs, ys = np.meshgrid(fractions * width, fractions * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


@dataclass
class Correspondence:
    """Two images and the paper's matcher between them; features load on first use.

    The descriptors are the tables' own (:func:`sdfuse.evaluation.pair_features`): SD layers 2/5/8
    reduced by co-PCA on this pair (PROTOCOL §3.1), assembled (§3.1), fused with DINOv2 block 11 as
    (α‖F_SD‖₂, (1 − α)‖F_DINO‖₂) (§4, §5.1), nearest neighbour by cosine (§6).
    """

    run: Run
    pair: Pair
    method: Method

    @property
    def frame(self) -> int:
        """Side of the DINO frame, 14·G px, where matching happens (PROTOCOL §1)."""
        return DINO_PATCH * self.run.grid

    @cached_property
    def features(self) -> PairFeatures:
        """The pair's cached features and co-PCA (extracted now if missing, with a progress bar if the run has one)."""
        for cache in (self.run.sd_features, self.run.dino_features):
            cache.prefill([self.pair.src_image, self.pair.trg_image], progress=self.run.progress)
        return pair_features(self.pair, {"fuse": self.method}, self.run.grid, self.run.sd_features,
                             self.run.dino_features)

    def points(self, points) -> np.ndarray:
        """Where the (x, y) ``points`` of A (its pixels) land in B (its pixels), as (K, 2) (PROTOCOL §1.2, §6).

        Predictions are cell centres, so they are precise to one 14-px cell of the frame; a cell that
        straddles B's padding has its centre up to half a cell outside B's pixel range.
        """
        src = map_keypoints(check_points(points, self.pair.src_size), *self.pair.src_size, self.frame)
        predicted = match_keypoints(*self.features.descriptors(self.method), src, self.run.grid, self.frame)
        return unmap_keypoints(predicted, *self.pair.trg_size, self.frame)

    def dense(self) -> np.ndarray:
        """For every cell of B (row-major, G² of them), the index of its nearest cell of A (PROTOCOL §6)."""
        return dense_nearest(*self.features.descriptors(self.method))

    def picture(self, points, predicted, dense: bool = False) -> Image.Image:
        """:func:`sdfuse.book.viz.match_picture` of this pair: lines from ``points`` to ``predicted``, and the
        dense maps."""
        from .book.viz import dense_panels, match_picture

        images = (open_rgb(self.pair.src_image), open_rgb(self.pair.trg_image))
        panels = dense_panels(*images, self.dense(), self.run.grid) if dense else None
        return match_picture(*images, points, predicted, panels)

    def record(self, points, predicted, picture: str | None = None) -> dict:
        """Plain values of a match: both images (path, size), the settings, and every point with its prediction."""
        images = {side: {"path": str(path), "width": size[0], "height": size[1]} for side, path, size in
                  (("a", self.pair.src_image, self.pair.src_size), ("b", self.pair.trg_image, self.pair.trg_size))}
        return {**images, "profile": self.run.profile, "grid": self.run.grid, "alpha": self.method.alpha,
                "picture": picture,
                "points": [{"a": [float(x), float(y)], "b": [float(u), float(v)]}
                           for (x, y), (u, v) in zip(np.asarray(points), np.asarray(predicted))]}


@contextmanager
def smoke_hint(how: str):
    """Re-raise a missing-weights error with ``how`` to try the same thing on the smoke profile."""
    try:
        yield
    except WeightsNotFoundError as error:
        raise WeightsNotFoundError(f"{error}\n  - or try it without them: {how} (tiny random models: it shows the "
                                   f"machinery, not the method)") from error


def _pair(run: Run, a, b=None) -> Pair:
    """The pair a → b, or a → a when ``b`` is None (with the image decoded and checked once)."""
    path_a, size_a = image_file(a, run, "A" if b is not None else "")
    path_b, size_b = (path_a, size_a) if b is None else image_file(b, run, "B")
    return Pair("user", "user", path_a, path_b, size_a, size_b, np.zeros((0, 2)), np.zeros((0, 2)),
                np.zeros(0, bool), 1.0)


def correspondence(a, b, *, alpha: float = 0.5, run: Run | None = None, profile: str | None = None,
                   **run_options) -> Correspondence:
    """The :class:`Correspondence` of images ``a`` → ``b``; images, α and options are checked before any model loads."""
    run = run_for(run, profile, **run_options)
    method = Method("Fuse", pca_dim=run.pca_dim, alpha=float(alpha))
    return Correspondence(run, _pair(run, a, b), method)


def match(a, b, points, *, alpha: float = 0.5, run: Run | None = None, profile: str | None = None,
          **run_options) -> np.ndarray:
    """Where the (x, y) ``points`` of image ``a`` (its pixels) land in image ``b`` (its pixels), as (K, 2).

    Fused SD + DINOv2 descriptors with the pair's co-PCA, exactly as the tables compute them
    (:class:`Correspondence`; PROTOCOL §3.1, §4, §5.1, §6). ``a``/``b``: paths, PIL images or
    arrays; ``alpha``: the weight on SD; ``run`` or ``profile`` (default "paper") and any option of
    :func:`sdfuse.profiles.resolve` (``device="cuda"``, ``grid=60``, ``cache_dir=...``).
    """
    pair = correspondence(a, b, alpha=alpha, run=run, profile=profile, **run_options)
    with smoke_hint("profile='smoke'"):
        return pair.points(points)


def describe(image, *, alpha: float = 0.5, run: Run | None = None, profile: str | None = None,
             **run_options) -> np.ndarray:
    """The fused descriptor map of one image, (G, G, D) float32, row-major cells; D = 3·pca_dim + DINOv2 width
    (1536 on the paper profile; less if a layer has fewer than pca_dim/2 tokens, as in the tables).

    The paper's co-PCA is pair-specific (PROTOCOL §3.1): one image has no partner. Here each SD
    layer is reduced by the PCA of the image alone, computed as the co-PCA of the image with itself
    (stacking the tokens twice keeps their mean and principal axes), so the rest is the tables' own
    code: assembly [8 | 5 | 2↑↑] (§3.1), DINOv2 block 11 (§4), fusion (α‖F_SD‖₂, (1 − α)‖F_DINO‖₂)
    (§5.1). Components beyond the image's rank are zero up to float rounding (layer 2 has only
    (G/4)² tokens). The reference has a per-image PCA only as an unused option (§3.4). The basis is
    the image's own, so the SD halves of two images' maps are not comparable: to match two images
    use :func:`match`, which runs the co-PCA on the pair.
    """
    run = run_for(run, profile, **run_options)
    method = Method("Fuse", pca_dim=run.pca_dim, alpha=float(alpha))
    with smoke_hint("profile='smoke'"):
        descriptors = Correspondence(run, _pair(run, image), method).features.descriptors(method)[0]
    return descriptors.reshape(run.grid, run.grid, -1).float().numpy()


def match_points(image_a, image_b, points, run: Run | None = None, alpha: float = 0.5) -> np.ndarray:
    """Deprecated alias of :func:`match` (kept for one release)."""
    warnings.warn("sdfuse.api.match_points is deprecated; use sdfuse.match(a, b, points, run=...)",
                  DeprecationWarning, stacklevel=2)
    return match(image_a, image_b, points, alpha=alpha, run=run)
