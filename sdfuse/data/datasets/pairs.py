"""The dataset-agnostic pair structure every loader returns and every table consumes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...protocol.geometry import frame_scale, map_keypoints


@dataclass(frozen=True, eq=False)
class Pair:
    """One source/target image pair with keypoints in original pixels.

    ``threshold`` is the PCK reference length in original *target* pixels: the longer side of the
    target bbox for SPair-71k (PROTOCOL §7.1) or of the target image for image-size thresholds.
    ``visible`` marks mutually visible keypoints (v_src · v_trg > 0, PROTOCOL §1.2).
    """

    pair_id: str
    category: str
    src_image: Path
    trg_image: Path
    src_size: tuple[int, int]
    trg_size: tuple[int, int]
    src_kps: np.ndarray
    trg_kps: np.ndarray
    visible: np.ndarray
    threshold: float
    kp_ids: tuple[int, ...] = ()

    def in_frame(self, frame: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Visible source and target keypoints and the threshold length, mapped to the frame (§1.2, §7.1)."""
        vis = self.visible
        src = map_keypoints(self.src_kps[vis], *self.src_size, frame)
        trg = map_keypoints(self.trg_kps[vis], *self.trg_size, frame)
        return src, trg, self.threshold * frame_scale(*self.trg_size, frame)
