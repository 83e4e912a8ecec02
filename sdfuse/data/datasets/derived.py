"""Images the protocol derives from dataset files (CUB crops, TSS padded pairs), cached as PNG files.

A derived file is named by a key over the sha256 of its source files' bytes, the derivation's
settings (its name and version, its parameters) and the image-decoding conventions
(:data:`sdfuse.data.images.IMAGE_DECODING`), never by the source's name alone: a replaced or edited
source, or a changed derivation, gives another file, so a stale one is never read. Files are
written under a temporary name and renamed (:func:`sdfuse.data.storage.atomic_write`); one that no
longer passes its PNG checksums is written again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

from PIL import Image

from ...errors import DatasetError
from ..images import IMAGE_DECODING
from ..storage import atomic_write

log = logging.getLogger(__name__)


def derived_key(sources: list[Path], settings: dict) -> str:
    """16 hex digits of sha256 over the sources' sha256, ``settings`` and the decoding conventions."""
    digests = []
    for source in sources:
        try:
            with open(source, "rb") as handle:
                digests.append(hashlib.file_digest(handle, "sha256").hexdigest())
        except OSError as error:
            raise DatasetError(f"cannot read {source} ({error.strerror or error}); check the dataset layout") from error
    blob = json.dumps({"sources": digests, "settings": settings, "decoding": IMAGE_DECODING}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _intact(path: Path) -> bool:
    """Whether ``path`` exists and its PNG chunks pass their CRCs."""
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception as error:  # noqa: BLE001 - Pillow raises SyntaxError, OSError, ValueError... for a damaged file
        log.warning("derived image %s is damaged (%s); writing it again", path, error)
        return False


def cached_png(path: Path, make: Callable[[], Image.Image]) -> Path:
    """``path``, written from ``make()`` as PNG unless an intact file is already there."""
    if not _intact(path):
        atomic_write(path, lambda tmp: make().save(tmp, format="PNG"), what="the derived image",
                     fix="point the cache elsewhere (-p cache_dir=/path; derived images can be deleted safely)")
    return path
