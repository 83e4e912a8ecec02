"""TSS dense flow and its PCK (PROTOCOL §8, AMBIG-11; the subset weights of §16): pure array arithmetic.

The nearest-neighbour flow on the G×G grid (:func:`flow_from_nn`, the paper's integer source row
or the released code's true division), its upsampling to the padded pair's pixels
(:func:`dense_flow_to_image`), the per-sample PCK with EPE ≤ α·L_pck (:func:`tss_pck`) and
Table 5's subset average weighted by pair-folder counts (:func:`weighted_average`). The loader is
:mod:`sdfuse.data.datasets.tss`, the evaluation :mod:`sdfuse.evaluation.tss`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DatasetError


TSS_PAIR_FOLDERS = {"FG3DCar": 195, "JODS": 81, "PASCAL": 124}
"""Pair folders per subset in the real dataset (400 in all, 800 samples) (PROTOCOL §8, §16)."""


def flow_from_nn(nn_index: np.ndarray, grid: int, *, true_division: bool = False) -> np.ndarray:
    """(G, G, 2) float32 flow in cells from each target cell's nearest source cell (PROTOCOL §8).

    ``nn_index[t]`` is the row-major source index G·r_s + c_s matched to target cell t =
    G·r_t + c_t; the flow at (r_t, c_t) is (c_s − c_t, r_s − r_t) with the integer source row
    r_s = index // G (the flow the code intends; the ``paper`` form).

    ``true_division=True`` computes what the released ``pck_tss.py`` computes under the torch it
    pins (1.13.1; any torch ≥ 1.8): ``torch.div(indices, W)`` is a true division, so its source
    row is the float32 quotient index / G = r_s + c_s / G, and the flow is formed in float32 as
    there: float32(index / G) − float32(r_t) (the ``reference`` form, AMBIG-11).
    """
    nn = np.asarray(nn_index).reshape(-1)
    if nn.size != grid * grid or nn.min() < 0 or nn.max() >= grid * grid:
        raise ConfigError(f"nn_index must hold {grid}×{grid} source indices in [0, {grid * grid}), "
                          f"got {nn.size} values in [{nn.min()}, {nn.max()}]")
    rows, cols = (part.astype(np.float32) for part in np.divmod(np.arange(grid * grid), grid))
    src_rows = nn.astype(np.float32) / np.float32(grid) if true_division else (nn // grid).astype(np.float32)
    flow = np.stack([(nn % grid).astype(np.float32) - cols, src_rows - rows], axis=-1)
    return flow.reshape(grid, grid, 2)


def dense_flow_to_image(flow_cells: np.ndarray, padded_hw: tuple[int, int]) -> np.ndarray:
    """Upsample a (G, G, 2) cell flow to the padded pair's (H, W, 2) pixel flow (PROTOCOL §8).

    Bilinear (align_corners=False) to L×L with L = max(H, W), times L/G, then the centre region
    of the resize-with-padding: columns (L−W)//2 … +W when L = H, else rows (L−H)//2 … +H.
    A cell flow of any other shape is refused (:class:`ConfigError`).
    """
    if flow_cells.ndim != 3 or flow_cells.shape[0] != flow_cells.shape[1] or flow_cells.shape[2] != 2:
        raise ConfigError(f"a cell flow must be a (G, G, 2) array, got shape {flow_cells.shape}")
    height, width = padded_hw
    long_edge = max(height, width)
    grid = flow_cells.shape[0]
    cells = torch.from_numpy(np.ascontiguousarray(flow_cells, dtype=np.float32)).permute(2, 0, 1)[None]
    dense = F.interpolate(cells, size=(long_edge, long_edge), mode="bilinear", align_corners=False)
    dense = (dense * (long_edge / grid))[0].permute(1, 2, 0).numpy()
    if long_edge == height:
        left = (long_edge - width) // 2
        return dense[:, left:left + width]
    top = (long_edge - height) // 2
    return dense[top:top + height, :]


def tss_pck(flow_est: np.ndarray, flow_gt: np.ndarray, mask: np.ndarray, l_pck: float, alpha: float) -> float:
    """PCK in % of one sample: valid pixels whose EPE ≤ α·L_pck (PROTOCOL §8; note ≤, not <).

    EPE is computed in float32 as the reference does; ``mask`` selects the valid target pixels.
    """
    valid = np.asarray(mask, dtype=bool)
    if flow_est.shape != flow_gt.shape or flow_gt.shape[:2] != valid.shape:
        raise ConfigError(f"flow shapes {flow_est.shape} / {flow_gt.shape} and mask {valid.shape} disagree")
    if not valid.any():
        raise DatasetError("the validity mask has no valid pixel, so TSS PCK is undefined for this sample")
    diff = np.asarray(flow_est, dtype=np.float32)[valid] - np.asarray(flow_gt, dtype=np.float32)[valid]
    epe = np.sqrt(np.sum(diff ** 2, axis=1))
    return 100.0 * float(np.mean(epe <= alpha * l_pck))


def weighted_average(per_subset: dict[str, float], folder_counts: dict[str, int] = TSS_PAIR_FOLDERS) -> float:
    """Table 5's "Avg.": subset PCKs weighted by their pair-folder counts (PROTOCOL §16).

    With the real counts (195, 81, 124) this reproduces the supplement's column; the plain mean
    of the three subsets does not.
    """
    unknown = sorted(set(per_subset) - set(folder_counts))
    if unknown:
        raise ConfigError(f"no pair-folder count for TSS subset(s) {unknown}; known: {sorted(folder_counts)}")
    total = sum(folder_counts[name] for name in per_subset)
    return sum(value * folder_counts[name] for name, value in per_subset.items()) / total
