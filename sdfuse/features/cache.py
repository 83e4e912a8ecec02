"""Content-addressed per-image feature cache (DESIGN "Feature cache").

An entry is one safetensors file per image and extractor setting, at
``<root>/<kind>-<setting digest>/<image digest[:2]>/<image digest>.safetensors``, where the image
digest is the sha256 of the image file's bytes and the setting digest covers every field of the
extractor's fingerprint (weights identity, input size, timestep, noise seed, conditioning, layers,
dtype, code version). Writes go to a temporary file in the same folder and are renamed into place,
so an interrupted run leaves no readable partial entry and a rerun resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Protocol

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

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


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file under a temporary name in the same folder, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        fingerprint = extractor.config.fingerprint()
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
        stat = os.stat(image_path)
        key = (str(image_path), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(image_path)
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
            with Image.open(image_path) as image:
                features = self.extractor.extract(image.convert("RGB"))
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
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = setting.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self._fingerprint, indent=1, sort_keys=True))
            os.replace(tmp, setting)
        atomic_save({str(k): v for k, v in features.items()}, path,
                    metadata={"kind": self.kind, "source": os.fspath(image_path)})

    def prefill(self, image_paths: Iterable[str | os.PathLike], progress: bool = True) -> int:
        """Make sure every image has an entry; returns how many were extracted now."""
        paths = list(dict.fromkeys(os.fspath(p) for p in image_paths))
        before = self.forward_passes
        todo = [p for p in paths if not self.entry_path(p).is_file()]
        for path in tqdm(todo, desc=f"{self.kind} features", unit="img", disable=not progress or not todo):
            self.get(path)
        return self.forward_passes - before
