"""Image and keypoint geometry: resize-with-padding, keypoint mapping, patch <-> pixel.

Everything lives in a square *frame* of side ``T`` pixels (PROTOCOL §1). With the paper's
grid side G = 60 the DINO frame is 14·G = 840 px and the SD frame 16·G = 960 px; both show
the same padded content, and keypoints, predictions and thresholds live in the DINO frame.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

DINO_PATCH = 14
"""DINOv2 patch size in pixels; one descriptor cell is 14 px in the DINO frame (PROTOCOL §4)."""
SD_CELL = 16
"""SD layer-8 stride in pixels; one descriptor cell is 16 px in the SD frame (PROTOCOL §2.5)."""


def _np_round(value: float) -> int:
    """numpy's round-half-to-even, as the reference code uses (PROTOCOL §1.1)."""
    return int(np.round(value))


def resized_content_size(width: int, height: int, target: int) -> tuple[int, int]:
    """Size (w', h') of the aspect-preserving resize whose longer side is ``target`` (PROTOCOL §1.1)."""
    if height <= width:
        return target, _np_round(target * height / width)
    return _np_round(target * width / height), target


def pad_offsets(width: int, height: int, target: int) -> tuple[int, int]:
    """(left, top) offset of the resized content on the ``target`` square (PROTOCOL §1.1).

    The smaller half of an odd gap goes to the top/left: offset = floor((T - h') / 2).
    """
    new_w, new_h = resized_content_size(width, height, target)
    return (target - new_w) // 2, (target - new_h) // 2


def resize_pad(image: Image.Image, target: int, edge: bool = False) -> Image.Image:
    """Resize with PIL LANCZOS so the longer side is ``target`` and pad to a square (PROTOCOL §1.1).

    ``edge=False`` (the default, the reference's EDGE_PAD off) pastes onto a black canvas;
    ``edge=True`` replicates the border pixels instead.
    """
    image = image.convert("RGB")
    new_w, new_h = resized_content_size(image.width, image.height, target)
    resized = np.asarray(image.resize((new_w, new_h), Image.LANCZOS))
    left, top = pad_offsets(image.width, image.height, target)
    pad = ((top, target - new_h - top), (left, target - new_w - left), (0, 0))
    if edge:
        canvas = np.pad(resized, pad, mode="edge")
    else:
        canvas = np.pad(resized, pad, mode="constant", constant_values=0)
    return Image.fromarray(canvas)


def map_keypoints(kps: np.ndarray, width: int, height: int, target: int) -> np.ndarray:
    """Map (x, y) keypoints in original pixels into the ``target`` frame, in float32 as the reference (PROTOCOL §1.2).

    Both coordinates are scaled by target / max(W, H); the padding offset int((T - new)/2) is
    added on the short side, with new = round(T·short/long). As in the reference, the scale is
    not the rounded content scale (a < 0.5 px difference, replicated on purpose). The reference
    holds keypoints in a float32 tensor, so every step rounds to float32 there and here: the
    coordinates (float32(x)), the scale (the float64 quotient rounded to float32, then one float32
    product) and the integer offset (one float32 sum). Returned as float64 holding those values.
    """
    out = np.asarray(kps, dtype=np.float64).reshape(-1, 2).astype(np.float32)
    out *= np.float32(target / max(width, height))
    if height < width:
        out[:, 1] += np.float32(int((target - _np_round(target * height / width)) / 2))
    elif width < height:
        out[:, 0] += np.float32(int((target - _np_round(target * width / height)) / 2))
    return out.astype(np.float64)


def frame_scale(width: int, height: int, target: int) -> float:
    """Length scale from original pixels to the ``target`` frame: target / max(W, H) (PROTOCOL §7.1)."""
    return target / max(width, height)


def pixel_to_patch(xy: np.ndarray, grid: int, frame: int) -> np.ndarray:
    """Integer (col, row) cell of frame points: int32(float32(G / frame) · float32(coordinate)) (PROTOCOL §6).

    The reference multiplies its float32 keypoints by the Python float G/frame (60/840), which
    numpy evaluates in float32, and truncates toward zero (``.astype(int32)``); so does this.
    """
    xy = np.asarray(xy, dtype=np.float64).astype(np.float32)
    return np.trunc(np.float32(grid / frame) * xy).astype(np.int64)


def patch_to_pixel(cells: np.ndarray, patch: int = DINO_PATCH) -> np.ndarray:
    """Centre of a cell in the DINO frame: patch·p + patch/2 - 0.5 = 14·p + 6.5 (PROTOCOL §6)."""
    return np.asarray(cells, dtype=np.float64) * patch + (patch / 2 - 0.5)


def patch_index(cells: np.ndarray, grid: int) -> np.ndarray:
    """Row-major token index grid·row + col of (col, row) cells (PROTOCOL §3.1, §6)."""
    cells = np.asarray(cells, dtype=np.int64)
    return cells[..., 1] * grid + cells[..., 0]


def unmap_keypoints(kps: np.ndarray, width: int, height: int, target: int) -> np.ndarray:
    """Inverse of :func:`map_keypoints`: frame points back to original pixels of a W×H image."""
    kps = np.asarray(kps, dtype=np.float64).reshape(-1, 2).copy()
    if height < width:
        kps[:, 1] -= int((target - _np_round(target * height / width)) / 2)
    elif width < height:
        kps[:, 0] -= int((target - _np_round(target * width / height)) / 2)
    return kps / (target / max(width, height))
