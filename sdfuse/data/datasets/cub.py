"""CUB-200-2011 under ASIC's protocol: the CMR/ACSM cleaned test split, cropped to 256² (PROTOCOL §9).

Verified against the public sources (through the search tool; no code copied):

- ``kampta/asic`` ``datasets/cub.py`` (commit 7124b93): ``load_acsm_data`` reads
  ``CUB_200_2011/cachedir/cub/data/{split}_cub_cleaned.mat``, keeps the records whose class id
  (the number before '.' in ``rel_path``) is ``cls_idx``, takes keypoints from
  ``parts/part_locs.txt`` at row ``id − 1`` (the file is reshaped to (11788, 15, 5), so rows are
  image_id-major, 15 parts each), subtracts 1 from the bbox, pads it by 5 % of (w+1), (h+1)
  (``perturb_bbox(bbox, 0.05, 0)``), squares it with Python-2 rounding (``square_bbox``), crops
  with edge padding (``acsm_crop(border=True)``), resizes with LANCZOS and maps keypoints by
  (x − (x0 + 1))·size/side (``preprocess_kps_box_crop``).
- The CMR/ACSM loaders (``akanazawa/cmr`` ``data/cub.py`` and derivatives) read the same file with
  ``scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)['images']``: one record per
  image with fields ``id``, ``rel_path`` (e.g. ``001.Black_footed_Albatross/….jpg``), ``train``,
  ``test``, ``bbox`` (a struct x1, y1, x2, y2, 1-based pixels), ``width``, ``height``, ``parts``
  (3×15), ``mask`` and ``class_id`` (documented in ``dustymugs/cmr`` ``doc/files.md``). This module
  reads ``id``, ``rel_path`` and ``bbox`` only; keypoints come from ``part_locs.txt`` as in ASIC.

The crops are derived images, so :func:`load_cub` writes them as PNG files under a cache folder,
named by the source image's content and the crop (:mod:`sdfuse.data.datasets.derived`), and returns
pairs that point at them, all 256×256 with threshold 256 (the image size). Before that every
record is checked against its image (:func:`_checked_image`, :mod:`sdfuse.data.datasets.checks`).
"""
from __future__ import annotations

import itertools
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io
from PIL import Image

from ...errors import DatasetError
from ..images import image_size, open_rgb
from .checks import BORDER_TOLERANCE_PX, TEXT_ENCODING, box_problem, outside_root
from .derived import cached_png, derived_key
from .hints import fetch_hint, verify_hint
from .pairs import Pair

CROP_SIZE = 256
"""Side of ASIC's square crops, and the PCK reference length (PROTOCOL §9)."""
CUB_CLASSES = (1, 2, 3)
"""Assumed classes of supp. Table 8: 001–003, the three albatrosses (AMBIG-13, unverified)."""
CUB_ALPHAS = (0.10, 0.05, 0.01)
"""The thresholds of supp. Table 8 (PROTOCOL §9)."""
NUM_PARTS = 15
BOX_PADDING = 0.05
"""ASIC's ``perturb_bbox`` padding fraction (jitter 0) (PROTOCOL §9)."""


def py2_round(value: float) -> int:
    """Python 2's round(): halves away from zero, on the exact binary value (ACSM parity, PROTOCOL §9)."""
    return int(Decimal(value).to_integral_value(rounding=ROUND_HALF_UP))


def asic_square_box(bbox: tuple[float, float, float, float]) -> tuple[int, int, int]:
    """(x0, y0, side) of ASIC's square crop, 0-based, from a 1-based (x1, y1, x2, y2) bbox (PROTOCOL §9).

    1. bbox − 1; 2. pad 5 % of (w+1) left and right and 5 % of (h+1) top and bottom, with
    w = x2 − x1 (so w+1 is the width in pixels); 3. round the corners half-up, then grow the
    shorter side to the longer, moving the top-left corner by round((side − short)/2) half-up.
    The crop covers columns x0 … x0 + side − 1 and may extend past the image.
    """
    x1, y1, x2, y2 = (float(c) - 1 for c in bbox)
    pad_x, pad_y = BOX_PADDING * (x2 - x1 + 1), BOX_PADDING * (y2 - y1 + 1)
    left, top, right, bottom = (py2_round(c) for c in (x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y))
    width, height = right - left + 1, bottom - top + 1
    side = max(width, height)
    return left - py2_round((side - width) / 2), top - py2_round((side - height) / 2), side


def asic_crop(image: Image.Image, bbox: tuple[float, float, float, float],
              size: int = CROP_SIZE) -> tuple[Image.Image, int, int, int]:
    """ASIC's CUB crop: square box, border-replicate padding, LANCZOS to size² (PROTOCOL §9).

    Returns the crop and the box (x0, y0, side) of :func:`asic_square_box`; keypoints map by
    x ← (x − (x0 + 1))·size/side (:func:`crop_keypoints`).
    """
    x0, y0, side = asic_square_box(bbox)
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    inside_x = (max(0, x0), min(width, x0 + side))
    inside_y = (max(0, y0), min(height, y0 + side))
    if inside_x[0] >= inside_x[1] or inside_y[0] >= inside_y[1]:
        raise DatasetError(f"crop box x0={x0}, y0={y0}, side={side} of bbox {tuple(bbox)} misses the "
                           f"{width}×{height} image")
    window = pixels[inside_y[0]:inside_y[1], inside_x[0]:inside_x[1]]
    pad = ((inside_y[0] - y0, y0 + side - inside_y[1]), (inside_x[0] - x0, x0 + side - inside_x[1]), (0, 0))
    square = Image.fromarray(np.pad(window, pad, mode="edge"))
    return square.resize((size, size), Image.LANCZOS), x0, y0, side


def crop_keypoints(kps: np.ndarray, x0: int, y0: int, side: int, size: int = CROP_SIZE) -> np.ndarray:
    """Keypoints in the crop: (x − (x0 + 1))·size/side, likewise y (ASIC's ``preprocess_kps_box_crop``, §9)."""
    return (np.asarray(kps, dtype=np.float64) - np.array([x0 + 1, y0 + 1])) * (size / side)


def read_part_locs(path: Path, image_ids: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``parts/part_locs.txt`` rows ``image_id part_id x y visible`` → {image_id: ((15, 2), (15,) bool)}.

    Only ``image_ids`` are kept; each must list parts 1…15 exactly once. Coordinates must be
    finite and non-negative (pixels; invisible parts are 0, 0). Malformed lines raise
    :class:`DatasetError` with the file and 1-based line number.
    """
    parts: dict[int, dict[int, tuple[float, float, bool]]] = {i: {} for i in image_ids}
    try:
        lines = path.read_text(encoding=TEXT_ENCODING).splitlines()
    except (OSError, UnicodeDecodeError) as error:
        hint = fetch_hint("cub200", path.parent.parent)
        raise DatasetError(f"CUB part locations not readable at {path} ({error}); {hint}") from error
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            image_id, part_id, x, y, visible = (int(fields[0]), int(fields[1]), float(fields[2]),
                                                float(fields[3]), int(fields[4]))
            if len(fields) != 5 or not (math.isfinite(x) and math.isfinite(y)) or visible not in (0, 1) \
                    or x < 0 or y < 0:
                raise ValueError
        except (ValueError, IndexError) as error:
            raise DatasetError(f"{path}, line {number}: expected 'image_id part_id x y visible(0/1)', "
                               f"got {line!r}") from error
        if image_id in parts:
            if not 1 <= part_id <= NUM_PARTS or part_id in parts[image_id]:
                raise DatasetError(f"{path}, line {number}: part id {part_id} out of 1..{NUM_PARTS} or repeated")
            parts[image_id][part_id] = (x, y, bool(visible))
    out = {}
    for image_id, found in parts.items():
        if len(found) != NUM_PARTS:
            raise DatasetError(f"{path}: image id {image_id} has {len(found)} parts, expected {NUM_PARTS}")
        rows = [found[k] for k in range(1, NUM_PARTS + 1)]
        out[image_id] = (np.array([r[:2] for r in rows]), np.array([r[2] for r in rows]))
    return out


class CubRecord(NamedTuple):
    """One image of the split file: its CUB id, path under ``images/``, 1-based bbox, class id and,
    when the file records them, the image's width and height."""

    image_id: int
    rel_path: str
    bbox: tuple[float, float, float, float]
    class_id: int
    size: tuple[int, int] | None = None

    @property
    def folder(self) -> str:
        """The class folder, e.g. ``001.Black_footed_Albatross``: the pairs' category."""
        return self.rel_path.split("/")[0]


def _record(record, mat_path: Path, index: int) -> CubRecord:
    """One ``images`` struct → :class:`CubRecord`; the class id is the number before '.' in rel_path.

    ``rel_path`` must be a relative 'NNN.Class/name.jpg' without '..'; ``width``/``height`` are
    read when present (the CMR file has them) and checked against the image by :func:`load_cub`.
    """
    rel_path = str(getattr(record, "rel_path", ""))
    parts = rel_path.split("/")
    if rel_path.startswith("/") or "\\" in rel_path or ".." in parts or len(parts) != 2 or "" in parts:
        raise DatasetError(f"{mat_path}, record {index}: rel_path {rel_path!r} is not 'NNN.Class/name.jpg' "
                           f"(no '..', no absolute path); {verify_hint('cub200', mat_path.parents[3])}")
    try:
        image_id = float(record.id)
        box = tuple(float(getattr(record.bbox, name)) for name in ("x1", "y1", "x2", "y2"))
        class_id = int(parts[0].split(".")[0])
        size = None
        if hasattr(record, "width") and hasattr(record, "height"):
            width, height = float(record.width), float(record.height)
            if not (width.is_integer() and height.is_integer()):
                raise ValueError(f"width {width}, height {height}")
            size = int(width), int(height)
    except (AttributeError, TypeError, ValueError) as error:
        raise DatasetError(f"{mat_path}, record {index}: needs id, rel_path 'NNN.Class/name.jpg' and "
                           f"bbox.x1/y1/x2/y2 ({error!r})") from error
    if not image_id.is_integer() or not (box[0] <= box[2] and box[1] <= box[3]):
        raise DatasetError(f"{mat_path}, record {index}: invalid id {image_id} or bbox {box}")
    return CubRecord(int(image_id), rel_path, box, class_id, size)


def read_split(mat_path: Path, classes: tuple[int, ...]) -> list[CubRecord]:
    """The split's records in ``classes``, in file order (PROTOCOL §9).

    Errors name the file and the 1-based record number.
    """
    if not mat_path.is_file():
        raise DatasetError(
            f"CUB split file not found at {mat_path}. Download the CMR/ACSM cachedir.tar.gz (PROTOCOL §11) "
            f"and unpack it into CUB_200_2011/ so that cachedir/cub/data/{mat_path.name} exists: "
            f"{fetch_hint('cub200', mat_path.parents[3])}.")
    try:
        images = scipy.io.loadmat(mat_path, struct_as_record=False, squeeze_me=True)["images"]
    except Exception as error:  # noqa: BLE001 - scipy raises MatReadError, ValueError, IndexError, zlib.error...
        raise DatasetError(f"{mat_path}: not a readable CMR/ACSM split file with an 'images' struct "
                           f"({type(error).__name__}: {str(error)[:120]}); it may be empty or truncated: unpack "
                           f"cachedir.tar.gz again ({verify_hint('cub200', mat_path.parents[3])})") from error
    records = [_record(record, mat_path, index) for index, record in enumerate(np.atleast_1d(images), start=1)]
    seen: dict[int, int] = {}
    for index, record in enumerate(records, start=1):
        if record.image_id in seen:
            raise DatasetError(f"{mat_path}, record {index}: image id {record.image_id} repeats record "
                               f"{seen[record.image_id]}, so its pairs would count twice")
        seen[record.image_id] = index
    return [record for record in records if record.class_id in classes]


def _checked_image(root: Path, record: CubRecord, kps: tuple[np.ndarray, np.ndarray], where: str) -> Path:  # pragma: no mutate block  (input check)
    """The record's image, checked against it: inside ``images/``, of the recorded size, the bbox and
    the visible parts inside it within :data:`~sdfuse.data.datasets.checks.BORDER_TOLERANCE_PX`."""
    hint = verify_hint("cub200", root)
    source = root / "images" / record.rel_path
    problem = outside_root(source, root / "images")
    if problem:
        raise DatasetError(f"{where}: {problem} ({hint})")
    try:
        size = image_size(source, hint=hint)
    except DatasetError as error:
        raise DatasetError(f"CUB image {source} cannot be opened: {error}") from error
    if record.size is not None and record.size != size:
        raise DatasetError(f"{where}: width × height {record.size[0]}×{record.size[1]} but {source.name} is "
                           f"{size[0]}×{size[1]} pixels ({hint})")
    problem = box_problem(record.bbox, size, inclusive=True)
    if problem:
        raise DatasetError(f"{where}: bbox: {problem} ({hint})")
    points, visible = kps
    outside = visible & ((points < -BORDER_TOLERANCE_PX) | (points > np.array(size) + BORDER_TOLERANCE_PX)).any(axis=1)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DatasetError(f"{root / 'parts' / 'part_locs.txt'}: part {k + 1} of image id {record.image_id} at "
                           f"{points[k].tolist()} lies outside {source.name} ({size[0]}×{size[1]}) ({hint})")
    return source


def _cached_crop(source: Path, cache: Path, record: CubRecord) -> tuple[Path, int, int, int]:  # pragma: no mutate block  (derived-image cache)
    """The crop's PNG under ``cache`` and its box, keyed by the source's content and the crop settings."""
    x0, y0, side = asic_square_box(record.bbox)
    key = derived_key([source], {"derivation": "asic-cub-crop-1", "box": [x0, y0, side], "size": CROP_SIZE})

    def crop() -> Image.Image:
        image = open_rgb(source, hint=verify_hint("cub200", source.parents[2]))
        try:
            return asic_crop(image, record.bbox)[0]
        except DatasetError as error:
            raise DatasetError(f"CUB image {source}: {error}") from error

    return cached_png(cache / record.folder / f"{Path(record.rel_path).stem}-{key}.png", crop), x0, y0, side


class _CroppedImage(NamedTuple):
    """A split record with its cached crop and its keypoints in crop pixels."""

    record: CubRecord
    path: Path
    kps: np.ndarray
    visible: np.ndarray


def _pair(src: _CroppedImage, trg: _CroppedImage) -> Pair:
    """A CUB pair in crop pixels: mutual visibility, threshold = crop size (PROTOCOL §9)."""
    return Pair(
        pair_id=f"{Path(src.record.rel_path).stem}-{Path(trg.record.rel_path).stem}:{src.record.folder}",
        category=src.record.folder, src_image=src.path, trg_image=trg.path,
        src_size=(CROP_SIZE, CROP_SIZE), trg_size=(CROP_SIZE, CROP_SIZE), src_kps=src.kps, trg_kps=trg.kps,
        visible=src.visible & trg.visible, threshold=float(CROP_SIZE), kp_ids=tuple(range(NUM_PARTS)),
    )


def load_cub(root: str | Path, classes: tuple[int, ...] = CUB_CLASSES, *, cache_dir: str | Path,
             split: str = "test") -> list[Pair]:
    """All ordered pairs (i ≠ j) within each class of the ASIC CUB split (PROTOCOL §9).

    ``root`` is the ``CUB_200_2011`` folder. Classes in the order given, images in split-file
    order, pairs in ``itertools.permutations`` order (ASIC's ``sample_tuples`` with count=None).
    Keypoints are in crop pixels, invisible ones set to (0, 0); ``visible`` is v_src·v_trg > 0;
    threshold 256. Crops are cached as PNG under ``cache_dir/cub_asic256``. The split file and
    ``part_locs.txt`` are checked against the images (:func:`_checked_image`); a problem raises
    :class:`DatasetError` naming the file, the record or line, and what to do.
    """
    root = Path(root).expanduser()
    mat_path = root / "cachedir" / "cub" / "data" / f"{split}_cub_cleaned.mat"
    for path in (mat_path, root / "parts" / "part_locs.txt"):
        if path.exists() and (problem := outside_root(path, root)):
            raise DatasetError(f"{problem} ({verify_hint('cub200', root)})")
    records = read_split(mat_path, classes)
    kps = read_part_locs(root / "parts" / "part_locs.txt", {record.image_id for record in records})
    cache = Path(cache_dir).expanduser() / f"cub_asic{CROP_SIZE}"
    by_class: dict[int, list[_CroppedImage]] = {c: [] for c in classes}
    for record in records:
        source = _checked_image(root, record, kps[record.image_id], f"{mat_path}, image id {record.image_id}")
        path, x0, y0, side = _cached_crop(source, cache, record)
        points, visible = kps[record.image_id]
        mapped = np.where(visible[:, None], crop_keypoints(points, x0, y0, side), 0.0)
        by_class[record.class_id].append(_CroppedImage(record, path, mapped, visible))
    pairs = []
    for cls in classes:
        if len(by_class[cls]) < 2:
            raise DatasetError(f"CUB class {cls:03d} has {len(by_class[cls])} image(s) in the {split} split; "
                               f"pairs need at least 2")
        pairs += [_pair(src, trg) for src, trg in itertools.permutations(by_class[cls], 2)]
    return pairs
