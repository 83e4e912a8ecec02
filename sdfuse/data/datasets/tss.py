"""TSS (FG3DCar, JODS, PASCAL): samples and pair padding; the flow arithmetic is :mod:`sdfuse.protocol.flow`.

Everything here follows PROTOCOL §8 (read from the reference's ``pck_tss.py`` and
``utils/utils_tss.py``). Conventions worth keeping in mind:

- Each pair folder gives **two samples**: (image1 → image2, GT ``flow2.flo``, ``mask2.png``) and
  (image2 → image1, GT ``flow1.flo``, ``mask1.png``). The GT flow lives on the **target** grid and
  points target → source: target pixel p corresponds to source point p + flow(p).
- Both images are zero-padded at the right/bottom to a common H×W; the GT flow by replicating
  its last row/column, the mask by zeros (:func:`pad_pair`).
- A target pixel is correct when its end-point error is **≤** α·L_pck (not <), with L_pck the
  longer side of the *unpadded* source image; PCK is the mean over valid pixels (:func:`sdfuse.protocol.flow.tss_pck`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...errors import DatasetError
from ..images import open_gray, open_rgb
from .checks import outside_root
from .flo import UNKNOWN_FLOW_THRESH, read_flo
from .hints import fetch_hint, verify_hint

TSS_SUBSETS = ("FG3DCar", "JODS", "PASCAL")
TSS_ALPHA = 0.05
"""The reported threshold: PCK@0.05 (supp. Table 5)."""
PAIR_FILES = ("image1.png", "image2.png", "flow1.flo", "flow2.flo", "mask1.png", "mask2.png")


@dataclass(frozen=True)
class TSSSample:
    """One evaluated direction of a TSS pair folder (PROTOCOL §8).

    ``direction`` is ``"12"`` (source image1, target image2) or ``"21"`` (the reverse).
    ``flow`` is the ground truth on the target grid (target → source) and ``mask`` the target's
    validity mask: ``flow2.flo``/``mask2.png`` when image2 is the target, direction ``"12"``.
    """

    subset: str
    pair_dir: str
    direction: str
    src_image: Path
    trg_image: Path
    flow: Path
    mask: Path


class TSSData(NamedTuple):
    """A sample's arrays after :func:`pad_pair`, and its PCK reference length (PROTOCOL §8)."""

    src: np.ndarray
    trg: np.ndarray
    flow: np.ndarray
    mask: np.ndarray
    l_pck: float


def _folder_samples(subset: str, folder: Path) -> list[TSSSample]:
    """The two directions of one pair folder, image1 → image2 first (PROTOCOL §8)."""
    missing = [name for name in PAIR_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"TSS pair folder {folder} lacks {', '.join(missing)} "
                           f"(every pair folder holds {', '.join(PAIR_FILES)}); "
                           f"{verify_hint('tss', folder.parent.parent)}")
    for name in PAIR_FILES:
        problem = outside_root(folder / name, folder.parent.parent)
        if problem:
            raise DatasetError(f"{problem} ({verify_hint('tss', folder.parent.parent)})")
    image1, image2 = folder / "image1.png", folder / "image2.png"
    return [
        TSSSample(subset, folder.name, "12", image1, image2, folder / "flow2.flo", folder / "mask2.png"),
        TSSSample(subset, folder.name, "21", image2, image1, folder / "flow1.flo", folder / "mask1.png"),
    ]


def load_tss(root: str | Path, subsets: tuple[str, ...] = TSS_SUBSETS) -> list[TSSSample]:
    """All samples of ``subsets`` under ``root`` (the ``TSS_CVPR2016`` folder) (PROTOCOL §8, §11).

    Subsets in the order given, pair folders in sorted name order, both directions per folder:
    2 × 400 = 800 samples for the real dataset. Every file of a pair folder must resolve (symbolic
    links followed) inside ``root`` (:mod:`sdfuse.data.datasets.checks`).
    """
    root = Path(root).expanduser()
    samples: list[TSSSample] = []
    for subset in subsets:
        folder = root / subset
        if not folder.is_dir():
            raise DatasetError(
                f"TSS subset {subset!r} not found at {folder}. Download TSS_CVPR2016.zip (PROTOCOL §11, "
                f"the reference's data/prepare_tss.sh) and unpack it so that {root}/{subset}/<pair>/image1.png "
                f"exists: {fetch_hint('tss', root)}.")
        pair_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        if not pair_dirs:
            raise DatasetError(f"TSS subset folder {folder} holds no pair folders; {verify_hint('tss', root)}")
        for pair_dir in pair_dirs:
            samples += _folder_samples(subset, pair_dir)
    return samples


def pair_folder_counts(samples: list[TSSSample]) -> dict[str, int]:
    """Distinct pair folders per subset among ``samples``: the weights of :func:`weighted_average`."""
    return dict(Counter(subset for subset, _ in dict.fromkeys((s.subset, s.pair_dir) for s in samples)))


def pad_pair(src_img: np.ndarray, trg_img: np.ndarray, flow: np.ndarray,
             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pad both images at the right/bottom to a common H×W (PROTOCOL §8, ``pad_to_same_shape``).

    Images are padded with zeros; the target-grid GT flow by replicating its border and the
    target mask with zeros (False), so padded pixels are never evaluated and flow values at the
    original pixels are unchanged.
    """
    height = max(src_img.shape[0], trg_img.shape[0])
    width = max(src_img.shape[1], trg_img.shape[1])

    def grow(array: np.ndarray, **kwargs) -> np.ndarray:
        pad = [(0, height - array.shape[0]), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
        return np.pad(array, pad, **kwargs)

    return grow(src_img), grow(trg_img), grow(flow, mode="edge"), grow(mask)


def read_sample(sample: TSSSample) -> TSSData:
    """Load a sample's RGB images, GT flow and mask, and pad them with :func:`pad_pair` (PROTOCOL §8).

    The mask is valid where its grey value is 255, as the reference's ``/255`` then ``uint8``
    cast; L_pck = max(H, W) of the unpadded source image. Images go through
    :func:`sdfuse.data.images.open_rgb` (damaged files raise :class:`DatasetError` naming them). The GT
    flow may be unknown (NaN, infinite or above 1e9, Middlebury) only where the mask is invalid;
    there it is set to 0, which no PCK reads; unknown flow at a valid pixel is an error.
    """
    hint = verify_hint("tss", Path(sample.src_image).parents[2])
    src = np.asarray(open_rgb(sample.src_image, hint=hint))
    trg = np.asarray(open_rgb(sample.trg_image, hint=hint))
    flow = read_flo(sample.flow, allow_nonfinite=True)
    mask = open_gray(sample.mask, hint=hint) == 255
    for path, shape in ((sample.flow, flow.shape[:2]), (sample.mask, mask.shape)):
        if shape != trg.shape[:2]:
            raise DatasetError(f"{path}: size {shape[1]}×{shape[0]} differs from its target image "
                               f"{sample.trg_image.name} ({trg.shape[1]}×{trg.shape[0]})")
    unknown = ~np.isfinite(flow).all(axis=2) | (np.abs(np.nan_to_num(flow)) > UNKNOWN_FLOW_THRESH).any(axis=2)
    if (unknown & mask).any():
        row, col = (int(v) for v in np.argwhere(unknown & mask)[0])
        raise DatasetError(f"{sample.flow}: unknown (NaN, infinite or > 1e9) flow at {int((unknown & mask).sum())} "
                           f"pixel(s) that {sample.mask.name} marks valid, first at row {row}, column {col}")
    flow[unknown] = 0.0
    return TSSData(*pad_pair(src, trg, flow, mask), l_pck=float(max(src.shape[:2])))
