"""An oracle backbone for the synthetic fixtures: features that are known functions of each cell's true position.

The fixtures draw every image as a base picture under a recorded similarity warp
(:data:`sdfuse.data.datasets.synthetic.WARPS_FILE`), so the base-picture ("canonical") position of every
pixel is known. The oracle's DINO tokens are unit-norm Fourier features of the canonical position
of each cell's centre (zero off the picture), the same for blocks 9 and 11; its SD layers are zero,
so SD alone matches every keypoint to cell 0 and every fusion matches as DINO does. Through the
real cache and evaluation, a method's nearest neighbours are then the maxima of a kernel of
canonical positions that the tests compute from the geometry alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from sdfuse.data.datasets.synthetic import WARPS_FILE

from .feature_stubs import StubConfig, pixel_digest

FREQUENCIES = 2 * np.pi * np.array([(r * np.cos(a), r * np.sin(a)) for r, a in
                                    zip(np.linspace(0.3, 3.0, 24), 2.39996 * np.arange(24))])
"""24 frequencies on a golden-angle spiral, 0.3 to 3 cycles per picture side: one kernel peak inside
the picture (higher frequencies alias to far cells)."""
SD_CHANNELS = 16
"""Zero SD maps of 16 channels per layer: co-PCA keeps 16 per layer at the smoke profile's d = 16, so
3·16 equals the 48 Fourier channels and the sum fusions apply."""


def fourier(canonical: np.ndarray) -> np.ndarray:
    """(N, 48) float32 unit-norm Fourier features of canonical positions in picture units ([0, 1]²); NaN → 0."""
    phase = np.nan_to_num(canonical) @ FREQUENCIES.T
    features = np.hstack([np.cos(phase), np.sin(phase)]) / np.sqrt(len(FREQUENCIES))
    features[np.isnan(canonical).any(axis=1)] = 0.0
    return features.astype(np.float32)


@dataclass(frozen=True)
class View:
    """An image as a backbone sees it: its size and the map from its pixel coordinates to canonical ones."""

    size: tuple[int, int]
    to_canonical: Callable[[np.ndarray], np.ndarray]


def warp_view(size: tuple[int, int], affine: np.ndarray, picture_size: tuple[int, int],
              crop: tuple[float, float, float] | None = None) -> View:
    """The view of an image drawn by ``affine`` (base → image); ``crop`` = (x0, y0, side) for a square
    crop of that image resized to ``size`` (CUB). Canonical positions are in picture units, NaN off it."""
    inverse = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]
    picture = np.asarray(picture_size, dtype=float)

    def to_canonical(points: np.ndarray) -> np.ndarray:
        if crop is not None:
            x0, y0, side = crop
            points = np.asarray([x0, y0]) + (points + 0.5) * side / size[0] - 0.5
        canonical = (points @ inverse[:, :2].T + inverse[:, 2]) / picture
        canonical[((canonical < 0) | (canonical > 1)).any(axis=1)] = np.nan
        return canonical

    return View(size, to_canonical)


def cell_centres(view: View, grid: int, cell: int) -> np.ndarray:
    """View-pixel positions of the centres of the G×G cells of the view resize-padded to cell·G px, row-major.

    The content is the view resized so its longer side is cell·G (numpy rounding of the shorter),
    centred with the smaller half of the gap top/left; PIL maps pixel centres, so frame pixel u shows
    view pixel (u − offset + 0.5)·W/w′ − 0.5.
    """
    side = cell * grid
    width, height = view.size
    new_w, new_h = (side, int(np.round(side * height / width))) if height <= width else \
        (int(np.round(side * width / height)), side)
    left, top = (side - new_w) // 2, (side - new_h) // 2
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    u, v = cell * cols + cell / 2 - 0.5, cell * rows + cell / 2 - 0.5
    return np.stack([(u - left + 0.5) * width / new_w - 0.5, (v - top + 0.5) * height / new_h - 0.5], axis=1)


def dino_tokens(view: View, grid: int) -> np.ndarray:
    """The oracle's (G², 48) DINO tokens of a view (DINO frame: 14 px per cell)."""
    return fourier(view.to_canonical(cell_centres(view, grid, 14)))


class OracleExtractor:
    """The extractor the cache wraps: ``kind`` "dino" (blocks 9 and 11) or "sd" (layers 2, 5, 8, zero)."""

    def __init__(self, kind: str, views: dict[str, View], grid: int):
        self.config = StubConfig(f"oracle-{kind}-{grid}")
        self.kind, self.views, self.grid = kind, views, grid

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        view = self.views[pixel_digest(image)]
        g = self.grid
        if self.kind == "sd":
            return {layer: torch.zeros(SD_CHANNELS, side, side) for layer, side in ((2, g // 4), (5, g // 2), (8, g))}
        tokens = torch.from_numpy(dino_tokens(view, g))
        grid_map = tokens.T.reshape(-1, g, g).contiguous()
        return {9: grid_map.clone(), 11: grid_map}


def read_warps(folder: Path) -> dict[str, dict]:
    """The fixture's recorded warps: {image path relative to ``folder``: picture, picture_size, affine}."""
    return json.loads((Path(folder) / WARPS_FILE).read_text())


def views_of(folder: Path) -> dict[str, View]:
    """{pixel digest: view} of every image a fixture folder records."""
    views = {}
    for relative, warp in read_warps(folder).items():
        image = Image.open(Path(folder) / relative)
        views[pixel_digest(image)] = warp_view(image.size, np.array(warp["affine"]), tuple(warp["picture_size"]))
    return views
