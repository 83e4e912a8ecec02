"""Nearest-neighbour matching of source keypoints on the descriptor grid (PROTOCOL §6)."""
from __future__ import annotations

import numpy as np
import torch

from .fusion import l2_normalize
from .geometry import patch_index, patch_to_pixel, pixel_to_patch


def nearest_patches(src_desc: torch.Tensor, trg_desc: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """Index of the most cosine-similar target token for each source token in ``rows`` (PROTOCOL §6).

    Only the K keypoint rows are compared with all target tokens (K × N), which equals taking those
    rows of the reference's full N × N matrix. Ties go to the first index, as argmax does.
    """
    query = l2_normalize(src_desc[torch.as_tensor(rows, dtype=torch.long)].double())
    similarity = query @ l2_normalize(trg_desc.double()).T
    return similarity.argmax(dim=1).numpy()


def match_keypoints(src_desc: torch.Tensor, trg_desc: torch.Tensor, src_kps: np.ndarray,
                    grid: int, frame: int) -> np.ndarray:
    """Predicted target points (K, 2) in the frame for source keypoints (K, 2) in the same frame.

    Source point → cell int(G/frame · x) → nearest target token → cell centre 14·p + 6.5 px
    (PROTOCOL §6; ``frame`` = 14·G, the DINO frame).
    """
    rows = patch_index(pixel_to_patch(src_kps, grid, frame), grid)
    rows = np.clip(rows, 0, grid * grid - 1)
    found = nearest_patches(src_desc, trg_desc, rows)
    cells = np.stack([found % grid, found // grid], axis=1)
    return patch_to_pixel(cells, patch=frame // grid)
