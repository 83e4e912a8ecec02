"""The DINOv2 variants of supp. Table 5, reconstructed (PROTOCOL §4, AMBIG-5).

Neither variant is in the released code and the supplement gives no parameters, so both are
marked *reconstructed* wherever they appear:

- **Filter-ViT**: a joint bilateral filter over the G×G map of DINOv2 tokens, guided by the
  image average-pooled to G×G (spatial σ in cells, range σ on [0, 1] RGB, Euclidean colour
  distance, square window).
- **Ensemble-ViT**: block 9 ("an early layer") and block 11 (the last), each L2-normalised and
  concatenated with equal weights, matched by cosine — see ``Method(dino_blocks=(9, 11))``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError
from .geometry import DINO_PATCH, resize_pad


@dataclass(frozen=True)
class BilateralFilter:
    """Joint bilateral filter parameters (PROTOCOL §4 proposed defaults)."""

    kernel: int = 5
    sigma_space: float = 1.0
    sigma_color: float = 0.1

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"filter kernel must be a positive odd number of cells, got {self.kernel}")
        if self.sigma_space <= 0 or self.sigma_color <= 0:
            raise ConfigError("filter sigmas must be positive")


def guide_image(path: str | Path, grid: int, edge_pad: bool = False) -> torch.Tensor:
    """(3, G, G) guide: the image resize-padded to the DINO frame (§1.1), average-pooled per 14-px cell, in [0, 1]."""
    with Image.open(path) as image:
        frame = np.asarray(resize_pad(image, DINO_PATCH * grid, edge=edge_pad), dtype=np.float32) / 255
    pixels = torch.from_numpy(frame).permute(2, 0, 1)[None]
    return F.avg_pool2d(pixels, DINO_PATCH)[0]


def filter_tokens(tokens: torch.Tensor, guide: torch.Tensor, spec: BilateralFilter) -> torch.Tensor:
    """Joint-bilateral-filter a (C, G, G) token map with a (3, G, G) guide (Filter-ViT, reconstructed)."""
    from kornia.filters import joint_bilateral_blur

    out = joint_bilateral_blur(tokens[None].float(), guide[None].float(), spec.kernel, spec.sigma_color,
                               (spec.sigma_space, spec.sigma_space), border_type="reflect", color_distance_type="l2")
    return out[0]
