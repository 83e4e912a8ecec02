"""Content-addressed per-image feature cache (DESIGN "Feature cache").

An entry is one safetensors file per image and extractor setting, at
``<root>/<kind>-<setting digest>/<image digest[:2]>/<image digest>.safetensors``, where the image
digest is the sha256 of the image file's bytes and the setting digest covers every field of the
extractor's fingerprint (weights identity, input size, timestep, noise seed, conditioning, layers,
dtype, code version) and the image-decoding conventions (:data:`sdfuse.images.IMAGE_DECODING`).
Writes go to a temporary ``.tmp-<pid>-<host>-*.part`` file in the same folder, are fsync'ed and
renamed into place (:func:`sdfuse.storage.atomic_write`), so an interrupted or killed run leaves no
readable partial entry and a rerun resumes where it stopped; the temporary files of dead writers are
never read and are removed by the next :meth:`CachedExtractor.prefill`. Concurrent writers of the
same entry each write their own temporary file and the last rename wins: a reader sees a complete
entry or none. A full disk raises :class:`~sdfuse.errors.StorageError` naming the entry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Protocol

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..errors import DatasetError
from ..images import IMAGE_DECODING, open_rgb
from ..storage import atomic_write, atomic_write_text, remove_stray_tmp

log = logging.getLogger(__name__)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def setting_digest(fingerprint: dict) -> str:
    """Short sha256 of a fingerprint dict (canonical JSON)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


CACHE_FIX = "move the feature cache to a bigger or writable disk (-p cache_dir=/path; the cache can be deleted safely)"


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file under a temporary name in the same folder, fsync, then rename.

    On any failure nothing is left at ``path`` (or its previous content stays); a full disk or an
    unwritable folder raises :class:`~sdfuse.errors.StorageError` naming ``path``.
    """
    contiguous = {k: v.contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        try:
            save_file(contiguous, tmp, metadata=metadata)
        except SafetensorError as error:  # its I/O errors (a full disk) come as text: "... (os error 28)"
            code = re.search(r"os error (\d+)", str(error))
            if code is None:
                raise
            raise OSError(int(code[1]), os.strerror(int(code[1]))) from error

    atomic_write(path, write, what="the feature-cache entry", fix=CACHE_FIX)


class Extractor(Protocol):
    """What the cache wraps: a config with a fingerprint and an ``extract(PIL image)`` method."""

    config: object

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]: ...


class CachedExtractor:
    """An extractor behind the on-disk cache, with a small in-memory LRU on top.

    ``forward_passes`` counts the images that actually went through the backbone.
    """

    def __init__(self, extractor: Extractor, root: str | os.PathLike, kind: str, memory_items: int = 64):
        self.extractor = extractor
        self.kind = kind
        fingerprint = {**extractor.config.fingerprint(), "image_decoding": IMAGE_DECODING}
        self.folder = Path(root).expanduser() / f"{kind}-{setting_digest(fingerprint)}"
        self._fingerprint = fingerprint
        self._memory: OrderedDict[str, dict[int, torch.Tensor]] = OrderedDict()
        self._memory_items = memory_items
        self._digests: dict[tuple, str] = {}
        self.forward_passes = 0

    def entry_path(self, image_path: str | os.PathLike) -> Path:
        """Where the entry of ``image_path`` lives (whether or not it exists yet)."""
        digest = self._digest(image_path)
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def _digest(self, image_path) -> str:
        try:
            stat = os.stat(image_path)
            key = (str(image_path), stat.st_size, stat.st_mtime_ns)
            if key not in self._digests:
                self._digests[key] = file_digest(image_path)
        except OSError as error:
            raise DatasetError(f"image {image_path} not found or not readable ({error.strerror or error}); "
                               f"check the dataset layout") from error
        return self._digests[key]

    def get(self, image_path: str | os.PathLike) -> dict[int, torch.Tensor]:
        """Features of the image file: memory, then disk, then the backbone (and store the result)."""
        path = self.entry_path(image_path)
        key = str(path)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        features = self._read(path)
        if features is None:
            image = open_rgb(image_path)
            try:
                features = self.extractor.extract(image)
            except DatasetError as error:
                raise DatasetError(f"{image_path}: {error}") from error
            self.forward_passes += 1
            self._write(path, features, image_path)
        self._memory[key] = features
        if len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        return features

    def _read(self, path: Path) -> dict[int, torch.Tensor] | None:
        if not path.is_file():
            return None
        try:
            return {int(k): v for k, v in load_file(str(path)).items()}
        except (SafetensorError, OSError, ValueError) as error:
            log.warning("unreadable cache entry %s (%s); recomputing it", path, error)
            return None

    def _write(self, path: Path, features: dict[int, torch.Tensor], image_path) -> None:
        setting = self.folder / "setting.json"
        if not setting.is_file():
            atomic_write_text(setting, json.dumps(self._fingerprint, indent=1, sort_keys=True),
                              what="the cache setting record", fix=CACHE_FIX)
        atomic_save({str(k): v for k, v in features.items()}, path,
                    metadata={"kind": self.kind, "source": os.fspath(image_path)})

    def prefill(self, image_paths: Iterable[str | os.PathLike], progress: bool = True) -> int:
        """Make sure every image has an entry; returns how many were extracted now."""
        paths = list(dict.fromkeys(os.fspath(p) for p in image_paths))
        self.remove_stray_tmp()
        before = self.forward_passes
        todo = [p for p in paths if not self.entry_path(p).is_file()]
        for path in tqdm(todo, desc=f"{self.kind} features", unit="img", disable=not progress or not todo):
            self.get(path)
        return self.forward_passes - before

    def remove_stray_tmp(self) -> int:
        """Delete temporary files that killed writers left in this setting's folder; returns how many."""
        return remove_stray_tmp(self.folder, depth=1)
