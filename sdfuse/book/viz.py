"""Correspondence pictures: supp. Fig. 1's colour maps and swapped appearance, and point matches."""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from ..data.datasets.pairs import Pair
from ..evaluation.pair_features import Method, pair_features
from ..profiles.runs import Run
from ..protocol.geometry import DINO_PATCH, resize_pad
from ..protocol.matching import dense_nearest


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


def _uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def cell_upsample(cells: np.ndarray, patch: int = DINO_PATCH) -> np.ndarray:
    """(G, G, C) cell values as a (patch·G, patch·G, C) picture, each cell a patch × patch block."""
    return np.repeat(np.repeat(cells, patch, axis=0), patch, axis=1)


def dense_panels(src: Image.Image, trg: Image.Image, nearest: np.ndarray, grid: int) -> dict[str, np.ndarray]:
    """Fig. 1-style uint8 pictures in the DINO frame: the colour code laid over A, every B cell in the
    colour of its matched A cell, and B rebuilt from A's matched patches (``nearest``: per B cell)."""
    src_frame = np.asarray(resize_pad(src, DINO_PATCH * grid))
    code = cell_upsample(position_colours(grid)) * 255
    return {"colour code on A": _uint8(0.5 * src_frame + 0.5 * code),
            "B: colour of the matched A cell": _uint8(cell_upsample(colour_map(nearest, grid)) * 255),
            "B rebuilt from A's patches": swapped_appearance(src_frame, nearest, grid)}


PANEL_PX = 360
"""Height of every panel of :func:`match_picture`, in pixels."""
GAP_PX = 8
"""White space between panels and between rows."""
CAPTION_PX = 18
"""Caption strip under every row."""


def _line_colour(k: int, count: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(k / max(count, 1), 0.85, 0.95)
    return round(255 * r), round(255 * g), round(255 * b)


def match_picture(src: Image.Image, trg: Image.Image, points: np.ndarray, predicted: np.ndarray,
                  panels: dict[str, np.ndarray] | None = None) -> Image.Image:
    """A and B side by side, each :data:`PANEL_PX` high, a coloured line from every point of A to its
    prediction in B; below, when given, the :func:`dense_panels` as :data:`PANEL_PX` squares.

    Size: width max(w_A + GAP + w_B, 3·PANEL + 2·GAP) with w = round(W·PANEL/H); height
    PANEL + CAPTION, plus GAP + PANEL + CAPTION with panels.
    """
    widths = [max(1, round(image.width * PANEL_PX / image.height)) for image in (src, trg)]
    row_width = widths[0] + GAP_PX + widths[1]
    dense_width = len(panels) * PANEL_PX + (len(panels) - 1) * GAP_PX if panels else 0
    height = PANEL_PX + CAPTION_PX + (GAP_PX + PANEL_PX + CAPTION_PX if panels else 0)
    canvas = Image.new("RGB", (max(row_width, dense_width), height), "white")
    draw = ImageDraw.Draw(canvas)
    offsets = (0, widths[0] + GAP_PX)
    for image, width, left, caption in zip((src, trg), widths, offsets, ("A: points", "B: their matches")):
        canvas.paste(image.convert("RGB").resize((width, PANEL_PX), Image.LANCZOS), (left, 0))
        draw.text((left + 2, PANEL_PX + 3), caption, fill=(60, 60, 60))
    ends = [np.asarray(p, dtype=np.float64) * [w / image.width, PANEL_PX / image.height] + [left, 0]
            for p, image, w, left in zip((points, predicted), (src, trg), widths, offsets)]
    for k, (start, end) in enumerate(zip(*ends)):
        colour = _line_colour(k, len(ends[0]))
        draw.line([tuple(start), tuple(end)], fill=colour, width=2)
        for x, y in (start, end):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour, outline="white")
    top = PANEL_PX + CAPTION_PX + GAP_PX
    for column, (caption, picture) in enumerate((panels or {}).items()):
        left = column * (PANEL_PX + GAP_PX)
        canvas.paste(Image.fromarray(picture).resize((PANEL_PX, PANEL_PX), Image.BOX), (left, top))
        draw.text((left + 2, top + PANEL_PX + 3), caption, fill=(60, 60, 60))
    return canvas


def picture_format(path) -> str:
    """Pillow's format name for a picture path's suffix (.png, .jpg, .webp, ...); ConfigError otherwise."""
    from pathlib import Path

    from ..errors import ConfigError

    suffix = Path(path).suffix.lower()
    formats = Image.registered_extensions()
    if suffix not in formats or formats[suffix] not in ("PNG", "JPEG", "WEBP", "TIFF", "BMP"):
        raise ConfigError(f"cannot write a picture to {path}: its suffix must be .png, .jpg, .webp, .tif or .bmp")
    return formats[suffix]


def save_picture(picture: Image.Image, path) -> None:
    """Write ``picture`` atomically (:func:`sdfuse.data.storage.atomic_write`) in the format of the path's suffix."""
    from ..data.storage import atomic_write

    fmt = picture_format(path)
    atomic_write(path, lambda tmp: picture.save(tmp, format=fmt), what="the picture",
                 fix="write it elsewhere (--out /writable/folder/match.png)")


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
