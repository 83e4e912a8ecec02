"""ODISE's trained projection heads instead of co-PCA: supp. Table 2's first row (PROTOCOL §3.3).

ODISE projects every extracted feature with one detectron2 bottleneck block (1×1 → 3×3 → 1×1
convolutions, GroupNorm(32), bottleneck 128, 512 out, 1×1 shortcut) stored in its checkpoint as
``backbone.feature_projections.<index>.0.*``, where ``index`` counts ODISE's feature list (two VAE
encoder maps first, so the paper's layers 2, 5, 8 are indices 2, 3, 4). Per crop, each map is
resized *nearest* to crop/stride with the stride clamped to [4, 32], projected, and the maps
sharing a stride are summed — layer 8 alone at stride 16, layers 2 and 5 together at stride 32
(the reference's "some bugs here"); the crops are then averaged on the sliding window as usual.
The descriptor is [stride 16 | stride 32 upsampled bilinearly], 1024-d, with no PCA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.images import frame_pixels
from ..errors import WeightsNotFoundError
from .captioner import read_checkpoint
from .sd import SDConfig, SDFeatureExtractor, average_windows, window_starts
from .weights import file_identity

FEATURE_INDEX = {2: 2, 5: 3, 8: 4}
"""Paper layer → index of its projection head in ODISE's feature list."""
STRIDE_GROUPS = {16: (8,), 32: (2, 5)}
"""Clamped stride → the paper layers projected and summed at that stride (PROTOCOL §3.3)."""
PREFIX = "backbone.feature_projections.{index}.0."
VERSION = "proj-1"


class BottleneckProjection(nn.Module):
    """One detectron2 BottleneckBlock with GroupNorm(32), stride 1, built from checkpoint tensors."""

    PARTS = ("conv1", "conv2", "conv3", "shortcut")

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        for part in self.PARTS:
            self.register_buffer(f"{part}_weight", _square_kernel(state[f"{part}.weight"], part).float())
            self.register_buffer(f"{part}_gamma", state[f"{part}.norm.weight"].float())
            self.register_buffer(f"{part}_beta", state[f"{part}.norm.bias"].float())

    def _conv_norm(self, x: torch.Tensor, part: str) -> torch.Tensor:
        weight = getattr(self, f"{part}_weight")
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        return F.group_norm(x, 32, getattr(self, f"{part}_gamma"), getattr(self, f"{part}_beta"), eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self._conv_norm(x, "conv1"))
        out = F.relu(self._conv_norm(out, "conv2"))
        out = self._conv_norm(out, "conv3")
        return F.relu(out + self._conv_norm(x, "shortcut"))


def _square_kernel(weight: torch.Tensor, part: str) -> torch.Tensor:  # pragma: no mutate block  (input check)
    """``weight`` when it is a (out, in, k, k) convolution with k odd: the padding k // 2 keeps the map size."""
    if weight.ndim != 4 or weight.shape[-1] != weight.shape[-2] or weight.shape[-1] % 2 == 0:
        raise WeightsNotFoundError(f"projection {part}.weight has shape {tuple(weight.shape)}; "
                                   "expected (out, in, k, k) with an odd k, as the ODISE heads have")
    return weight


def load_projections(checkpoint: str) -> dict[int, BottleneckProjection]:
    """The projection heads of the paper's layers 2, 5, 8 from an ODISE checkpoint."""
    raw = read_checkpoint(checkpoint)
    heads = {}
    for layer, index in FEATURE_INDEX.items():
        prefix = PREFIX.format(index=index)
        state = {k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}
        needed = {f"{c}.{p}" for c in BottleneckProjection.PARTS for p in ("weight", "norm.weight", "norm.bias")}
        if not needed <= set(state):
            raise WeightsNotFoundError(f"{checkpoint} has no projection head for layer {layer} ({prefix}*); "
                                       "is it ODISE's odise_label_coco_50e-b67d2efc.pth?")
        heads[layer] = BottleneckProjection(state)
    return heads


@dataclass(frozen=True)
class ProjectionConfig:
    """SD extraction followed by ODISE's projection heads (PROTOCOL §3.3)."""

    sd: SDConfig
    checkpoint: str

    def fingerprint(self) -> dict:
        return {**self.sd.fingerprint(), "projection": file_identity(self.checkpoint), "projection_version": VERSION}


class ProjectedSDExtractor:
    """{16: (512, G, G), 32: (512, G/2, G/2)} per image: projected SD features on the sliding window."""

    def __init__(self, config: ProjectionConfig, sd: SDFeatureExtractor | None = None):
        self.config = config
        self.sd = sd or SDFeatureExtractor(config.sd)
        self._heads: dict[int, BottleneckProjection] | None = None

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        pixels = frame_pixels(image, self.config.sd.image_size, self.config.sd.edge_pad)
        return {k: v.cpu() for k, v in self.extract_pixels(pixels).items()}

    @torch.no_grad()
    def extract_pixels(self, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        if self._heads is None:
            self._heads = {k: head.to(self.config.sd.device) for k, head in load_projections(self.config.checkpoint).items()}
        size = pixels.shape[-1]
        crop = min(self.config.sd.crop, size)
        axis = window_starts(size, crop)
        starts = [(y, x) for y in axis for x in axis]
        raw = self.sd.crop_features(torch.cat([pixels[:, :, y:y + crop, x:x + crop] for y, x in starts]))
        out = {}
        for stride, layers in STRIDE_GROUPS.items():
            side = crop // stride
            projected = sum(self._heads[layer](F.interpolate(raw[layer].float(), size=(side, side), mode="nearest"))
                            for layer in layers)
            out[stride] = average_windows(projected, starts, size, stride)
        return out


def projection_descriptor(maps: dict[int, torch.Tensor], grid: int) -> torch.Tensor:
    """(G², 1024) tokens: [stride-16 map | stride-32 map upsampled bilinearly to G] (PROTOCOL §3.3)."""
    fine = maps[16]
    coarse = F.interpolate(maps[32][None], size=(grid, grid), mode="bilinear", align_corners=False)[0]
    desc = torch.cat([fine, coarse])
    return desc.reshape(desc.shape[0], -1).T
