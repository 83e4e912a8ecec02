"""PF-PASCAL from its pair CSV, as the reference's ``load_pascal_data`` reads it (PROTOCOL §7.2, §11).

``<root>/<split>_pairs_pf_pascal.csv`` (root = the ``PF-dataset-PASCAL`` folder) has a header row
``source_image,target_image,class,XA,YA,XB,YB`` and one pair per row, read by position:

0. source image path, 1. target image path, both like ``PF-dataset-PASCAL/JPEGImages/x.jpg`` and
   resolved against root's *parent* (the reference's ``data/``);
2. class id, 1-based, in the order of :data:`PF_PASCAL_CLASSES`;
3.–6. XA, YA (source) and XB, YB (target): ';'-separated floats, used as written (no 0/1-based
   correction, AMBIG-2).

Keypoint k of the pair is (XA[k], YA[k]) ↔ (XB[k], YB[k]); ``Pair.visible`` is the mutual
visibility. A listed entry (−1, −1) is read as "absent": that keypoint is invisible in its image and
stored as (0, 0), as the reference zeroes invisible rows. This is a protocol choice (AMBIG-23): the
reference marks every *listed* entry visible (``Zmask[:len(X)] = 1``), so a literal (−1, −1) would be
evaluated there at its mapped position; ``listed_visible=True`` does that. The PCK threshold is the
image size: max(W_t, H_t) in original target pixels, so α·840 in the 840 frame (AMBIG-10).

Malformed rows are **rejected**, never skipped: the first bad row raises :class:`DatasetError`
naming the CSV file and its row, counted as 1-based lines of the file (the header is row 1).
Blank lines are ignored, as pandas does; a UTF-8 byte-order mark is accepted. Coordinates must be
finite; image paths must be relative and resolve (symbolic links followed) inside the
``PF-dataset-PASCAL`` folder; images must exist and be readable (:func:`sdfuse.data.images.image_size`).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from .checks import TEXT_ENCODING, checked_size, outside_root
from .hints import fetch_hint, verify_hint
from .pairs import Pair

PF_PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
"""The 20 classes in class-id order: id 1 is aeroplane, id 20 tvmonitor (PROTOCOL §7.2)."""
PF_PASCAL_ALPHAS = (0.05, 0.10, 0.15)
"""The thresholds reported for PF-Pascal (PROTOCOL §7.2)."""
CSV_HEADER = ("source_image", "target_image", "class", "XA", "YA", "XB", "YB")
PADDING = -1.0
"""Coordinate value of a padded (absent) keypoint."""


class _RowError(Exception):
    """A problem in one CSV row; :func:`load_pfpascal` adds the file and row to the message."""


def _coordinates(text: str, column: str) -> np.ndarray:
    """One ';'-separated coordinate list as floats."""
    try:
        return np.array([float(token) for token in text.split(";")], dtype=np.float64)
    except ValueError as error:
        raise _RowError(f"column {column} is not a ';'-separated list of numbers ({text!r})") from error


def _class_name(text: str) -> str:
    """Class name of a 1-based class id (PROTOCOL §7.2)."""
    try:
        value = float(text)
    except ValueError as error:
        raise _RowError(f"class id {text!r} is not a number") from error
    if not value.is_integer() or not 1 <= value <= len(PF_PASCAL_CLASSES):
        raise _RowError(f"unknown class id {text!r} (expected an integer 1..{len(PF_PASCAL_CLASSES)})")
    return PF_PASCAL_CLASSES[int(value) - 1]


def _keypoints(x_text: str, y_text: str, columns: str, listed_visible: bool) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) keypoints and their visibility; (−1, −1) becomes invisible (0, 0) unless ``listed_visible``
    (PROTOCOL §1.2, AMBIG-23)."""
    xs, ys = _coordinates(x_text, columns[0]), _coordinates(y_text, columns[1])
    if len(xs) != len(ys):
        raise _RowError(f"{columns[0]} has {len(xs)} values but {columns[1]} has {len(ys)}")
    points = np.stack([xs, ys], axis=1)
    if np.isnan(points).any():
        raise _RowError(f"NaN in {columns[0]}/{columns[1]}")
    if not np.isfinite(points).all():
        raise _RowError(f"infinite value in {columns[0]}/{columns[1]}")
    visible = np.ones(len(points), bool) if listed_visible else ~np.all(points == PADDING, axis=1)
    points[~visible] = 0.0
    return points, visible


def _check_inside(points: np.ndarray, visible: np.ndarray, size: tuple[int, int], image: Path) -> None:  # pragma: no mutate block  (input check)
    """Visible keypoints other than a listed (−1, −1) must lie in [0, W] × [0, H] of their image
    (coordinates may be 1-based)."""
    width, height = size
    outside = visible & ~np.all(points == PADDING, axis=1) & (
        (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height))
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise _RowError(f"keypoint {k} at {tuple(points[k])} lies outside {image.name} ({width}×{height})")


def _image_size(path: Path, sizes: dict[Path, tuple[int, int]], hint: str) -> tuple[int, int]:
    """(W, H) from the image header, read once per file; a missing or unreadable image names the file."""
    try:
        return checked_size(path, sizes, hint)
    except DatasetError as error:
        raise _RowError(str(error)) from error


def _image_path(text: str, root: Path, column: str) -> Path:
    """A CSV image path resolved against root's parent (the data folder); absolute paths, '..' and
    paths that resolve (symbolic links followed) outside the ``PF-dataset-PASCAL`` folder are refused."""
    relative = Path(text.strip())
    if not text.strip() or relative.is_absolute() or ".." in relative.parts:
        raise _RowError(f"{column} {text!r} is not a relative path like PF-dataset-PASCAL/JPEGImages/x.jpg")
    path = root.parent / relative
    problem = outside_root(path, root)
    if problem:
        raise _RowError(f"{column}: {problem}")
    return path


def _read_row(cells: list[str], number: int, root: Path, sizes: dict[Path, tuple[int, int]],
              hint: str = "", listed_visible: bool = False) -> Pair:
    """One CSV row → :class:`Pair` (PROTOCOL §7.2)."""
    if len(cells) != len(CSV_HEADER):
        raise _RowError(f"{len(cells)} columns, expected {len(CSV_HEADER)} ({','.join(CSV_HEADER)})")
    src_path = _image_path(cells[0], root, "source_image")
    trg_path = _image_path(cells[1], root, "target_image")
    category = _class_name(cells[2].strip())
    src_kps, src_vis = _keypoints(cells[3], cells[4], ("XA", "YA"), listed_visible)
    trg_kps, trg_vis = _keypoints(cells[5], cells[6], ("XB", "YB"), listed_visible)
    if len(src_kps) != len(trg_kps):
        raise _RowError(f"{len(src_kps)} source keypoints (XA/YA) but {len(trg_kps)} target keypoints (XB/YB)")
    src_size, trg_size = _image_size(src_path, sizes, hint), _image_size(trg_path, sizes, hint)
    _check_inside(src_kps, src_vis, src_size, src_path)
    _check_inside(trg_kps, trg_vis, trg_size, trg_path)
    return Pair(
        pair_id=f"{number:06d}-{src_path.stem}-{trg_path.stem}:{category}", category=category,
        src_image=src_path, trg_image=trg_path, src_size=src_size, trg_size=trg_size,
        src_kps=src_kps, trg_kps=trg_kps, visible=src_vis & trg_vis,
        threshold=float(max(trg_size)), kp_ids=tuple(range(len(src_kps))),
    )


def load_pfpascal(root: str | Path, split: str = "test", listed_visible: bool = False) -> list[Pair]:
    """All pairs of ``<root>/<split>_pairs_pf_pascal.csv`` in file order (PROTOCOL §7.2).

    ``root`` is the ``PF-dataset-PASCAL`` folder; the reference uses every pair (299 for test).
    ``listed_visible`` counts every listed entry as visible, (−1, −1) included, as the reference
    does (AMBIG-23); by default a (−1, −1) entry is an absent keypoint.
    Image sizes are read from the image files. See the module docstring for the row format and
    the reject-on-first-error policy.
    """
    root = Path(root).expanduser()
    csv_path = root / f"{split}_pairs_pf_pascal.csv"
    if not csv_path.is_file():
        raise DatasetError(
            f"PF-PASCAL pair list not found at {csv_path}. Download PF-dataset-PASCAL.zip and "
            f"{split}_pairs_pf_pascal.csv (PROTOCOL §11, the reference's data/prepare_pfpascal.sh) so that "
            f"{root}/JPEGImages/ and {csv_path.name} exist: {fetch_hint('pfpascal', root)}.")
    pairs: list[Pair] = []
    sizes: dict[Path, tuple[int, int]] = {}
    hint = verify_hint("pfpascal", root)
    problem = outside_root(csv_path, root)
    if problem:
        raise DatasetError(f"{problem} ({hint})")
    line = 0
    try:
        with csv_path.open(newline="", encoding=TEXT_ENCODING) as handle:
            reader = csv.reader(handle)
            for cells in reader:
                line = reader.line_num
                if not cells or not any(cell.strip() for cell in cells):
                    continue
                if reader.line_num == 1 and tuple(cell.strip() for cell in cells) == CSV_HEADER:
                    continue
                try:
                    pairs.append(_read_row(cells, len(pairs) + 1, root, sizes, hint, listed_visible))
                except _RowError as error:
                    raise DatasetError(f"{csv_path}, row {reader.line_num}: {error}") from error
    except (csv.Error, UnicodeDecodeError, OSError) as error:
        raise DatasetError(f"{csv_path}, after row {line}: not a readable CSV file ({type(error).__name__}: "
                           f"{str(error)[:160]}); replace it ({hint})") from error
    if not pairs:
        raise DatasetError(f"{csv_path} lists no pairs; replace it ({hint})")
    return pairs
