"""Nearest-neighbour matching of source keypoints on the descriptor grid (PROTOCOL §6)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .fusion import l2_normalize
from .geometry import patch_index, patch_to_pixel, pixel_to_patch


def similarity_rows(src_desc: torch.Tensor, trg_desc: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """Cosine similarity (K, N) of the source tokens ``rows`` to every target token (PROTOCOL §6).

    Only the K keypoint rows are compared with all N target tokens, which equals taking those
    rows of the reference's full N × N matrix.
    """
    query = l2_normalize(src_desc[torch.as_tensor(rows, dtype=torch.long)].double())
    return query @ l2_normalize(trg_desc.double()).T


def nearest_patches(src_desc: torch.Tensor, trg_desc: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """Index of the most similar target token for each source token in ``rows``; ties go to the first."""
    return similarity_rows(src_desc, trg_desc, rows).argmax(dim=1).numpy()


def keypoint_rows(kps: np.ndarray, grid: int, frame: int) -> np.ndarray:
    """Token rows of frame points: cell int(G/frame · x), index G·row + col (PROTOCOL §6)."""
    return np.clip(patch_index(pixel_to_patch(kps, grid, frame), grid), 0, grid * grid - 1)


def index_to_pixel(indices: np.ndarray, grid: int, patch: int = 14) -> np.ndarray:
    """Token indices → cell centres 14·p + 6.5 in the DINO frame, as (K, 2) x, y (PROTOCOL §6)."""
    indices = np.asarray(indices)
    return patch_to_pixel(np.stack([indices % grid, indices // grid], axis=-1), patch)


def match_keypoints(src_desc: torch.Tensor, trg_desc: torch.Tensor, src_kps: np.ndarray,
                    grid: int, frame: int) -> np.ndarray:
    """Predicted target points (K, 2) in the frame for source keypoints (K, 2) in the same frame.

    ``frame`` = 14·G, the DINO frame (PROTOCOL §6): a whole number of pixels per cell.
    """
    if frame % grid:
        raise ConfigError(f"the frame ({frame} px) must hold the grid's {grid} cells a whole number of pixels each")
    found = nearest_patches(src_desc, trg_desc, keypoint_rows(src_kps, grid, frame))
    return index_to_pixel(found, grid, patch=frame // grid)


def dense_nearest(src_desc: torch.Tensor, trg_desc: torch.Tensor, metric: str = "cosine",
                  chunk: int = 1024) -> np.ndarray:
    """For every target token, the best source token, building the similarity ``chunk`` target rows
    at a time so that memory stays bounded at any grid size.

    ``metric`` "cosine" (the paper's matcher) or "l2" (the reference's TSS ``cdist``, PROTOCOL §8).
    """
    src, trg = src_desc.double(), trg_desc.double()
    if metric == "cosine":
        src, trg = l2_normalize(src), l2_normalize(trg)
        bias = torch.zeros(len(src), dtype=src.dtype)
        scale = 1.0
    elif metric == "l2":
        bias = -(src * src).sum(dim=1)       # argmin ‖t − s‖² = argmax (2 t·s − ‖s‖²)
        scale = 2.0
    else:
        raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")
    return torch.cat([(scale * trg[i:i + chunk] @ src.T + bias).argmax(dim=1)
                      for i in range(0, len(trg), chunk)]).numpy()
