"""Opening images: one robust helper for every loader, the feature cache and the extractors.

The reference opens every image with ``PIL.Image.open(path).convert('RGB')`` (PROTOCOL §1.1);
sdfuse does the same for 8-bit images and fixes what that call gets wrong or leaves undefined.
The conventions, which also key the feature cache (:data:`IMAGE_DECODING`):

- **8-bit RGB** is used as stored.
- **Grayscale, palette, bilevel, CMYK, YCbCr, LAB, HSV** are converted with Pillow's
  ``convert('RGB')``, as the reference does (CMYK without a colour profile).
- **Alpha is dropped** (RGBA, LA, PA, palette transparency): the colour channels are used as
  stored, *not* composited on a background. This is what the reference's ``convert('RGB')`` does,
  so a transparent pixel keeps its stored colour.
- **16-bit** images (Pillow modes ``I;16*``, and ``I`` as 16-bit PNG/TIFF open) are scaled to
  8 bits, v ↦ round(v·255/65535), then treated as grayscale. The reference's ``convert('RGB')``
  would clip them at 255 (a white image); no benchmark image is 16-bit, so no reproduced number
  depends on this. ``I`` values outside [0, 65535] are clipped. 32-bit float (``F``) images are
  taken as [0, 1] when every value is ≤ 1, else as [0, 255], and clipped.
- **EXIF orientation is not applied**: the stored pixel grid is used, as ``Image.open`` gives it
  and as the reference does, so keypoint annotations refer to the stored grid (SPair-71k and
  PF-Pascal annotate the stored grid). An EXIF-rotated photo is therefore seen sideways.
- **Multi-frame files** (GIF, TIFF stacks): the first frame.
- **Degenerate images are rejected**: a side under :data:`MIN_SIDE` pixels (zero-sized, 1×1 or
  one pixel thin) has nothing to match; and an image so elongated that its short side rounds to
  0 px in the model frame is rejected by :func:`check_frame`.

Any failure raises :class:`~sdfuse.errors.DatasetError` naming the file and what to do; a
truncated, damaged or non-image file is detected when it is decoded, never passed on half-read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..protocol.geometry import resize_pad, resized_content_size

MIN_SIDE = 2
"""Smallest accepted image side in pixels."""
IMAGE_DECODING = "rgb8-1"
"""Version of the conventions above; part of every feature-cache key."""

_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def _hint(hint: str | None) -> str:
    return f" ({hint})" if hint else ""


def _scale16(values: np.ndarray) -> np.ndarray:
    """16-bit values → 8-bit, round(v·255/65535) in integer arithmetic."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def to_rgb(image: Image.Image, source: str = "the image") -> Image.Image:
    """An 8-bit RGB copy of a decoded PIL image, under the conventions of this module."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    try:
        if mode in _SIXTEEN_BIT or mode == "I":
            return Image.fromarray(_scale16(np.asarray(image))).convert("RGB")
        if mode == "F":
            values = np.asarray(image, dtype=np.float64)
            values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
            scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
            return Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8)).convert("RGB")
        if mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        elif mode == "La":                                         # premultiplied: Pillow converts it via LA
            image = image.convert("LA")
        return image.convert("RGB")   # 1, L, P, CMYK, YCbCr, LAB, HSV; RGBA, RGBa, RGBX, LA, PA drop alpha
    except (ValueError, OSError) as error:
        raise DatasetError(f"{source}: unsupported image mode {mode!r} ({error}); save it as 8-bit RGB "
                           f"(PNG or JPEG)") from error


def check_size(size: tuple[int, int], source: str, hint: str | None = None) -> None:
    """Reject an image with a side under :data:`MIN_SIDE` pixels."""
    width, height = size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise DatasetError(f"{source} is {width}×{height} pixels: images need at least {MIN_SIDE} pixels per side "
                           f"(a zero-sized or one-pixel image has nothing to match). Replace the file"
                           f"{_hint(hint)}.")


def check_frame(image: Image.Image, target: int) -> None:
    """Reject an image whose resize into the ``target``-px square frame (PROTOCOL §1.1) has a 0-px side."""
    new_w, new_h = resized_content_size(image.width, image.height, target)
    if min(new_w, new_h) < 1:
        raise DatasetError(f"a {image.width}×{image.height} image becomes {new_w}×{new_h} px in the {target}-px "
                           f"frame (PROTOCOL §1.1): too elongated to extract features; crop it to a less extreme "
                           f"aspect ratio")


def open_rgb(path: str | os.PathLike, *, hint: str | None = None) -> Image.Image:
    """Decode the image file at ``path`` fully and return it as 8-bit RGB (conventions: module docstring).

    ``hint`` (e.g. the dataset's fetch command) is appended to error messages. Raises
    :class:`~sdfuse.errors.DatasetError` naming the file when it is missing, truncated, damaged,
    not an image, of an unsupported mode, or degenerate.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image {path} not found{'' if path.parent.is_dir() else ' (nor its folder)'}. "
                           f"Check the dataset layout{_hint(hint)}.")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image, str(path))
    except DatasetError:
        raise
    except Image.DecompressionBombError as error:
        raise DatasetError(f"{path}: {error}. If the image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS; "
                           f"otherwise replace the file{_hint(hint)}.") from error
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, ValueError, SyntaxError, EOFError, zlib.error...
        raise DatasetError(f"cannot read image {path} ({type(error).__name__}: {error}): the file is truncated, "
                           f"damaged or not an image. Replace it{_hint(hint)}.") from error
    check_size(rgb.size, str(path), hint)
    return rgb


def open_gray(path: str | os.PathLike, *, hint: str | None = None) -> np.ndarray:
    """An 8-bit single-channel array of the image at ``path`` (masks): :func:`open_rgb`, then Pillow's 'L'."""
    return np.asarray(open_rgb(path, hint=hint).convert("L"))


def image_size(path: str | os.PathLike, *, hint: str | None = None) -> tuple[int, int]:
    """(W, H) of the image at ``path`` from its header (no decoding), checked like :func:`open_rgb`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image {path} not found. Check the dataset layout{_hint(hint)}.")
    try:
        with Image.open(path) as image:
            size = image.size
    except Exception as error:  # noqa: BLE001 - see open_rgb
        raise DatasetError(f"cannot read image {path} ({type(error).__name__}: {error}): the file is damaged or "
                           f"not an image. Replace it{_hint(hint)}.") from error
    check_size(size, str(path), hint)
    return size


def frame_pixels(image: Image.Image, size: int, edge: bool = False):
    """A (1, 3, size, size) float tensor in [0, 1] of any-mode ``image`` resize-padded to ``size`` (PROTOCOL §1.1).

    The image is converted by :func:`to_rgb` (alpha dropped, 16-bit scaled); degenerate images
    raise :class:`~sdfuse.errors.DatasetError`.
    """
    import torch

    if image.mode != "RGB":
        image = to_rgb(image)
    check_size(image.size, "the image")
    check_frame(image, size)
    padded = resize_pad(image, size, edge=edge)
    return torch.from_numpy(np.asarray(padded).copy()).permute(2, 0, 1).float().div(255)[None]
