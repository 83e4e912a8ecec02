"""Dense correspondence pictures for supp. Fig. 1: colour maps and swapped appearance across α."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .datasets.pairs import Pair
from .evaluation import Method, pair_features
from .geometry import DINO_PATCH, resize_pad
from .matching import dense_nearest
from .profiles import Run


def position_colours(grid: int) -> np.ndarray:
    """(G, G, 3) colours that vary smoothly with cell position (red → x, green → y, blue → 1 − x)."""
    ys, xs = np.mgrid[0:grid, 0:grid] / max(grid - 1, 1)
    return np.stack([xs, ys, 1 - xs], axis=-1)


def colour_map(nearest: np.ndarray, grid: int) -> np.ndarray:
    """(G, G, 3): each target cell takes the position colour of its matched source cell."""
    return position_colours(grid).reshape(-1, 3)[nearest].reshape(grid, grid, 3)


def swapped_appearance(src_frame: np.ndarray, nearest: np.ndarray, grid: int) -> np.ndarray:
    """(14G, 14G, 3): each target cell shows the 14×14 source patch it matched."""
    patches = src_frame.reshape(grid, DINO_PATCH, grid, DINO_PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(-1, DINO_PATCH, DINO_PATCH, 3)
    return patches[nearest].reshape(grid, grid, DINO_PATCH, DINO_PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(
        grid * DINO_PATCH, grid * DINO_PATCH, 3)


def alpha_sweep_maps(run: Run, pair: Pair, alphas) -> dict:
    """Source and target images in the DINO frame and, per α, the colour map and swapped appearance."""
    frame = DINO_PATCH * run.grid
    methods = {a: Method("Fuse", pca_dim=run.pca_dim, alpha=float(a)) for a in alphas}
    features = pair_features(pair, methods, run.grid, run.sd_features, run.dino_features)
    with Image.open(pair.src_image) as src, Image.open(pair.trg_image) as trg:
        src_frame = np.asarray(resize_pad(src, frame))
        trg_frame = np.asarray(resize_pad(trg, frame))
    maps = {}
    for a, method in methods.items():
        nearest = dense_nearest(*features.descriptors(method))
        maps[a] = (colour_map(nearest, run.grid), swapped_appearance(src_frame, nearest, run.grid))
    return {"source": src_frame, "target": trg_frame, "maps": maps}


def alpha_sweep_figure(sweep: dict, title: str = ""):
    """Grid of pictures: source and target, then per α the colour map and the swapped image."""
    import matplotlib.pyplot as plt

    alphas = list(sweep["maps"])
    fig, axes = plt.subplots(2, len(alphas) + 1, figsize=(2.2 * (len(alphas) + 1), 4.6))
    axes[0, 0].imshow(sweep["source"])
    axes[0, 0].set_title("source")
    axes[1, 0].imshow(sweep["target"])
    axes[1, 0].set_title("target")
    for col, a in enumerate(alphas, start=1):
        colours, swapped = sweep["maps"][a]
        axes[0, col].imshow(colours, interpolation="nearest")
        axes[0, col].set_title(f"α = {a:g}")
        axes[1, col].imshow(swapped)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
