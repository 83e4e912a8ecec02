"""SPair-71k from its on-disk layout, with the reference's pair sampling (PROTOCOL §7.1, §11).

Pair JSONs are validated, never trusted: a malformed, inconsistent or out-of-range annotation, or
one that disagrees with its images (their sizes) or leaves the dataset folder, raises
:class:`~sdfuse.errors.DatasetError` naming the file and the field (see :func:`read_pair`), so no
wrong keypoint or threshold ever reaches a PCK. Coordinates are the stored pixel grid's (EXIF orientation
is not applied, :mod:`sdfuse.data.images`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from .checks import TEXT_ENCODING, box_problem, checked_size, outside_root
from .hints import fetch_hint, verify_hint
from .pairs import Pair

LAYOUT = ("JPEGImages", "ImageAnnotation", "PairAnnotation")
MAX_SIDE = 1 << 16
"""Largest plausible image side in pixels (2¹⁶, just above JPEG's 65,535); larger ``*_imsize`` values are rejected."""


def spair_categories(root: Path) -> list[str]:
    """Sorted folder names of ``ImageAnnotation/`` (18 in the real dataset)."""
    return sorted(p.name for p in (root / "ImageAnnotation").iterdir() if p.is_dir())


def sample_indices(n: int, pairs_per_category: int, seed: int = 42) -> list[int]:
    """The reference's per-category draw: legacy RandomState(seed).choice(n, k), *with* replacement.

    Re-seeded for every category; k = 0 keeps all n pairs in order (PROTOCOL §7.1).
    """
    if pairs_per_category <= 0:
        return list(range(n))
    return np.random.RandomState(seed).choice(n, pairs_per_category).tolist()


class _Bad(Exception):
    """One invalid field; :func:`read_pair` adds the file name."""


def _integer(value, what: str) -> int:
    """An int, an integral float or a decimal string (SPair's ``kps_ids`` are strings); never a bool."""
    if isinstance(value, bool):
        raise _Bad(f"{what} is {value!r}, not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise _Bad(f"{what} is {value!r}, not an integer")


def _number(value, what: str) -> float:
    """A finite JSON number (not a string, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{what} is {value!r}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise _Bad(f"{what} is {number}, not a finite number")
    return number


def _list(value, what: str, length: int | None = None) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise _Bad(f"{what} is {str(value)[:80]}, not a list" + (f" of {length}" if length else ""))
    return value


def _size(value, what: str) -> tuple[int, int]:
    """``[W, H, C]`` → (W, H), each side in [1, MAX_SIDE]."""
    items = _list(value, what)
    if len(items) not in (2, 3):
        raise _Bad(f"{what} is {items}, expected [width, height, channels]")
    width, height = (_integer(v, what) for v in items[:2])
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise _Bad(f"{what} {width}×{height} is not a plausible image size")
    return width, height


def _keypoints(value, what: str, size: tuple[int, int]) -> np.ndarray:
    """A list of [x, y] finite numbers inside the image, [0, W] × [0, H]."""
    rows = [_list(row, f"{what}[{k}]", 2) for k, row in enumerate(_list(value, what))]
    points = np.array([[_number(x, f"{what}[{k}] x"), _number(y, f"{what}[{k}] y")] for k, (x, y) in enumerate(rows)],
                      dtype=np.float64).reshape(-1, 2)
    width, height = size
    outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise _Bad(f"{what}[{k}] = {points[k].tolist()} lies outside the {width}×{height} image")
    return points


def _name(value, what: str) -> str:
    """A plain file or folder name: no path separators, not '.' or '..'."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value:
        raise _Bad(f"{what} is {value!r}, not a plain file name")
    return value


def _box(data: dict, key: str, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``src_bndbox``/``trg_bndbox``: 4 finite numbers, non-degenerate, inside the image (:func:`box_problem`)."""
    box = tuple(_number(v, key) for v in _list(data[key], key, 4))
    problem = box_problem(box, size)
    if problem:
        raise _Bad(f"{key}: {problem}")
    return box


def _image(pair_file: Path, root: Path, category: str, name: str, key: str, stated: tuple[int, int],
           sizes: dict[Path, tuple[int, int]]) -> Path:
    """The image file of ``*_imname``: present, inside ``root``, of the size ``*_imsize`` states."""
    path = root / "JPEGImages" / category / name
    if not path.is_file():
        raise DatasetError(f"{pair_file} refers to {path}, which does not exist: the layout is incomplete; "
                           f"{verify_hint('spair71k', root)}")
    problem = outside_root(path, root)
    if problem:
        raise _Bad(f"{key}: {problem}")
    try:
        actual = checked_size(path, sizes)
    except DatasetError as error:
        raise _Bad(f"{key}: {error}") from error
    if actual != stated:
        imsize = key.replace("imname", "imsize")
        raise _Bad(f"{imsize} says {stated[0]}×{stated[1]} but {path.name} is {actual[0]}×{actual[1]} pixels")
    return path


def read_pair(path: Path, root: Path, sizes: dict[Path, tuple[int, int]] | None = None) -> Pair:
    """One ``PairAnnotation`` JSON → :class:`Pair` (threshold: target bbox's longer side, no +1).

    Checked (PROTOCOL §11's keys): the category is a plain name (and matches the file name's
    ``:<category>`` suffix); the image names are plain file names of images that exist inside
    ``root`` (symbolic links resolved, :mod:`sdfuse.data.datasets.checks`); ``*_imsize`` are [W, H, C]
    with sides in [1, 65536] and equal to the image files' sizes (headers, memoised in ``sizes``);
    ``src_kps``/``trg_kps`` are lists of [x, y] finite numbers inside their image ([0, W] × [0, H])
    and as long as ``kps_ids`` (unique integers ≥ 0, at least one); ``trg_bndbox`` (and
    ``src_bndbox`` when present) is 4 finite numbers with x1 < x2, y1 < y2, inside its image within
    :data:`~sdfuse.data.datasets.checks.BORDER_TOLERANCE_PX`; ``mirror`` is 0. The file is UTF-8, with
    or without a byte-order mark. Anything else raises :class:`DatasetError` naming the file and
    the field.
    """
    sizes = {} if sizes is None else sizes
    try:
        try:
            data = json.loads(path.read_text(encoding=TEXT_ENCODING))
        except (OSError, ValueError, RecursionError) as error:  # ValueError covers JSON and UTF-8 errors
            raise _Bad(f"not a readable JSON file ({type(error).__name__}: {str(error)[:120]})") from error
        if not isinstance(data, dict):
            raise _Bad(f"holds a JSON {type(data).__name__}, not an object")
        missing = [key for key in ("category", "src_imname", "trg_imname", "src_imsize", "trg_imsize",
                                   "src_kps", "trg_kps", "kps_ids", "trg_bndbox") if key not in data]
        if missing:
            raise _Bad(f"lacks the key(s) {missing}")
        mirror = data.get("mirror", 0)
        if mirror not in (0, None):
            raise _Bad(f"mirrored pairs are not part of the protocol (mirror={mirror!r})")
        category = _name(data["category"], "category")
        if ":" in path.stem and path.stem.rsplit(":", 1)[1] != category:
            raise _Bad(f"category {category!r} differs from the file name's {path.stem.rsplit(':', 1)[1]!r}")
        names = _name(data["src_imname"], "src_imname"), _name(data["trg_imname"], "trg_imname")
        src_size, trg_size = _size(data["src_imsize"], "src_imsize"), _size(data["trg_imsize"], "trg_imsize")
        images = [_image(path, root, category, name, key, size, sizes)
                  for name, key, size in zip(names, ("src_imname", "trg_imname"), (src_size, trg_size))]
        ids = [_integer(k, f"kps_ids[{i}]") for i, k in enumerate(_list(data["kps_ids"], "kps_ids"))]
        if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
            raise _Bad(f"kps_ids {ids} must be one or more distinct integers >= 0")
        src_kps = _keypoints(data["src_kps"], "src_kps", src_size)
        trg_kps = _keypoints(data["trg_kps"], "trg_kps", trg_size)
        if not (len(src_kps) == len(trg_kps) == len(ids)):
            raise _Bad(f"{len(src_kps)} source, {len(trg_kps)} target keypoints and {len(ids)} ids")
        x1, y1, x2, y2 = _box(data, "trg_bndbox", trg_size)
        if "src_bndbox" in data:
            _box(data, "src_bndbox", src_size)
    except _Bad as error:
        raise DatasetError(f"{path}: malformed SPair-71k pair annotation: {error}. Replace the file "
                           f"({verify_hint('spair71k', root)})") from error
    return Pair(
        pair_id=path.stem, category=category, src_image=images[0], trg_image=images[1],
        src_size=src_size, trg_size=trg_size, src_kps=src_kps, trg_kps=trg_kps,
        visible=np.ones(len(ids), dtype=bool), threshold=float(max(x2 - x1, y2 - y1)), kp_ids=tuple(ids),
    )


def load_spair(root: str | Path, split: str = "test", pairs_per_category: int = 20, seed: int = 42,
               categories: list[str] | None = None) -> list[Pair]:
    """SPair-71k pairs of ``split``, per category in sorted order (PROTOCOL §7.1).

    Files are ``sorted(PairAnnotation/<split>/*:<category>.json)``; with ``pairs_per_category`` > 0
    the reference's seeded draw with replacement picks them (duplicates kept). All keypoints listed
    in ``kps_ids`` are visible in both images, which is the reference's mutual visibility.
    """
    root = Path(root).expanduser()
    missing = [name for name in LAYOUT if not (root / name).is_dir()]
    if missing:
        raise DatasetError(
            f"SPair-71k not found at {root} (missing {', '.join(missing)}): {fetch_hint('spair71k', root)}. "
            f"That downloads and unpacks SPair-71k.tar.gz so that PairAnnotation/{split}/ exists. To try the "
            f"pipeline without it, run the smoke profile (sdfuse reproduce --profile smoke).")
    pair_dir = root / "PairAnnotation" / split
    if not pair_dir.is_dir():
        raise DatasetError(f"SPair-71k at {root} has no {split} split ({pair_dir} is missing): the layout is "
                           f"incomplete; {verify_hint('spair71k', root)}")
    available = spair_categories(root)
    unknown = sorted(set(categories or ()) - set(available))
    if unknown:
        raise DatasetError(f"unknown SPair-71k categories {unknown}; {root}/ImageAnnotation has {available}")
    if not available:
        raise DatasetError(f"{root}/ImageAnnotation holds no category folders; {verify_hint('spair71k', root)}")
    pairs: list[Pair] = []
    sizes: dict[Path, tuple[int, int]] = {}
    for category in categories or available:
        files = sorted(pair_dir.glob(f"*:{category}.json"))
        if not files:
            raise DatasetError(f"no {split} pairs for category {category!r}: {pair_dir} has no '*:{category}.json' "
                               f"file, so its PCK is undefined. Restore the pair files "
                               f"({verify_hint('spair71k', root)}), or leave the category out")
        for i in sample_indices(len(files), pairs_per_category, seed):
            problem = outside_root(files[i], root)
            if problem:
                raise DatasetError(f"{problem} ({verify_hint('spair71k', root)})")
            pairs.append(read_pair(files[i], root, sizes))
    return pairs
