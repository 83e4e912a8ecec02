"""Consistency checks every loader applies between annotations, their images and the dataset folder.

- **Paths stay in the dataset folder**: a path named by an annotation (or found in the layout) is
  resolved, symbolic links included, and must lie inside the resolved dataset folder. A dataset
  kept elsewhere is fine when the *whole* folder is linked (the folder itself is resolved too).
- **Image sizes** stated by an annotation equal the image file's, read from its header.
- **Boxes** are non-degenerate and inside their image within :data:`BORDER_TOLERANCE_PX`.
- **Text annotations** (CSV, TXT, JSON) are UTF-8, with or without a byte-order mark.

The callers raise :class:`~sdfuse.errors.DatasetError` naming the file, the field or row, and what
to do.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..images import image_size

BORDER_TOLERANCE_PX = 1.0
"""How far a box corner may lie outside [0, W] × [0, H] (pixels).

Annotations come 0-based (SPair-71k keypoints, x ≤ W − 1) or 1-based (PASCAL VOC-derived SPair
boxes and CUB boxes, x ≤ W), and real boxes touch the border; one pixel of slack accepts both
conventions and a box rounded outwards, and changes a bbox PCK threshold (the box's longer side)
by at most 2 px, while a box far outside the image (which inflates the threshold and the PCK) is
refused."""
TEXT_ENCODING = "utf-8-sig"
"""UTF-8 that drops a leading byte-order mark (as spreadsheet programs write), and reads plain UTF-8 alike."""


def outside_root(path: Path, root: Path) -> str | None:
    """Why ``path`` is not inside ``root`` once both are resolved (symlinks followed), or None."""
    resolved, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if resolved == top or top in resolved.parents:
        return None
    return (f"{path} resolves to {resolved}, outside the dataset folder {top} (a '..' or a symbolic link leads "
            f"out of it); keep every file of the dataset inside its folder (to store it elsewhere, link or mount "
            f"the whole folder)")


def box_problem(box: tuple[float, float, float, float], size: tuple[int, int], inclusive: bool = False) -> str | None:
    """Why the (x1, y1, x2, y2) ``box`` is degenerate or outside the (W, H) image, or None.

    Sides are x2 − x1 and y2 − y1, plus one for ``inclusive`` (1-based pixel-inclusive) boxes; both
    must be positive. Corners may lie up to :data:`BORDER_TOLERANCE_PX` outside [0, W] × [0, H].
    """
    x1, y1, x2, y2 = box
    width, height = size
    extra = 1 if inclusive else 0
    if not all(math.isfinite(v) for v in box):
        return f"box {list(box)} holds a non-finite value"
    if not (x2 - x1 + extra > 0 and y2 - y1 + extra > 0):
        return f"box {list(box)} is degenerate (it needs x1 < x2 and y1 < y2{' or equal, inclusive' * extra})"
    low, high_x, high_y = -BORDER_TOLERANCE_PX, width + BORDER_TOLERANCE_PX, height + BORDER_TOLERANCE_PX
    if not (low <= x1 and low <= y1 and x2 <= high_x and y2 <= high_y):
        return (f"box {list(box)} lies outside the {width}×{height} image (more than {BORDER_TOLERANCE_PX:g} px "
                f"beyond its border)")
    return None


def checked_size(path: Path, sizes: dict[Path, tuple[int, int]], hint: str = "") -> tuple[int, int]:
    """(W, H) of the image at ``path`` from its header, read once per file (``sizes`` memoises)."""
    if path not in sizes:
        sizes[path] = image_size(path, hint=hint)
    return sizes[path]
