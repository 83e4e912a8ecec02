"""Content-addressed per-image feature cache (DESIGN "Feature cache").

An entry is one safetensors file per image and extractor setting, at
``<root>/<kind>-<setting digest>/<image digest[:2]>/<image digest>.safetensors``, where the image
digest is the sha256 of the image file's bytes and the setting digest covers every field of the
extractor's fingerprint (weights identity, input size, timestep, noise seed, conditioning, layers,
dtype, code version) and the image-decoding conventions (:data:`sdfuse.data.images.IMAGE_DECODING`).
Writes go to a temporary ``.tmp-<pid>-<host>-*.part`` file in the same folder, are fsync'ed and
renamed into place (:func:`sdfuse.data.storage.atomic_write`), so an interrupted or killed run leaves no
readable partial entry and a rerun resumes where it stopped; the temporary files of dead writers are
never read and are removed by the next :meth:`CachedExtractor.prefill`. Concurrent writers of the
same entry each write their own temporary file and the last rename wins: a reader sees a complete
entry or none. A full disk raises :class:`~sdfuse.errors.StorageError` naming the entry.

Entries are verified on every read from disk (:meth:`CachedExtractor.verify`): the safetensors
metadata records the cache format, the image's sha256, the full sha256 of the setting fingerprint
and, per tensor, its shape, dtype and a 128-bit XXH3 digest of its bytes. An entry that does not
load, belongs to another image or setting, has a tensor of another shape, dtype or content (bit
flips), or holds NaN or infinite values is logged as a warning and recomputed, never used. XXH3 is
not cryptographic: it detects accidental damage (a flipped bit, a truncated or swapped file); a
person who can write the cache can also rewrite its digests. It runs several times faster than
sha256, which keeps verification to a few per cent of a warm run (``benchmarks/cache_verify.py``). Features
that come out of the backbone non-finite raise :class:`~sdfuse.errors.FeatureError` and are never
stored.
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
import xxhash
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..data.images import IMAGE_DECODING, open_rgb
from ..data.storage import atomic_write, atomic_write_text, remove_stray_tmp
from ..errors import DatasetError, FeatureError

log = logging.getLogger(__name__)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def setting_digest(fingerprint: dict, length: int = 16) -> str:
    """sha256 of a fingerprint dict (canonical JSON), its first ``length`` hex digits."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:length]


CACHE_FORMAT = "sdfuse-cache/2"
"""Layout of an entry's metadata (module docstring); part of the setting, so entries of another format
(format 1 had no digests) live in another folder and are never read."""


def tensor_digest(tensor: torch.Tensor) -> str:  # pragma: no mutate block  (cache I/O)
    """128-bit XXH3 of a tensor's bytes (C order)."""
    data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return xxhash.xxh3_128_hexdigest(data)


def _dtype_name(tensor: torch.Tensor) -> str:  # pragma: no mutate block  (cache I/O)
    return str(tensor.dtype).removeprefix("torch.")


def tensor_record(tensors: dict[str, torch.Tensor]) -> dict[str, dict]:  # pragma: no mutate block  (cache I/O)
    """Shape, dtype and digest of every tensor: what an entry's ``tensors`` metadata holds."""
    return {key: {"shape": list(t.shape), "dtype": _dtype_name(t), "xxh3_128": tensor_digest(t)}
            for key, t in sorted(tensors.items())}


def non_finite(tensors: dict) -> list:  # pragma: no mutate block  (cache I/O)
    """Keys of the tensors holding a NaN or an infinite value (a float sum first: cheap, never misses one)."""
    return [key for key, t in tensors.items()
            if t.is_floating_point() and not torch.isfinite(t.sum()) and not torch.isfinite(t).all()]


CACHE_FIX = "move the feature cache to a bigger or writable disk (-p cache_dir=/path; the cache can be deleted safely)"


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:  # pragma: no mutate block  (cache I/O)
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
        fingerprint = {**extractor.config.fingerprint(), "image_decoding": IMAGE_DECODING, "cache_format": CACHE_FORMAT}
        self.folder = Path(root).expanduser() / f"{kind}-{setting_digest(fingerprint)}"
        self._fingerprint = fingerprint
        self.setting = setting_digest(fingerprint, length=64)
        self._memory: OrderedDict[str, dict[int, torch.Tensor]] = OrderedDict()
        self._memory_items = memory_items
        self._digests: dict[tuple, str] = {}
        self._layout: dict | None = None
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
        features = self._read(path, image_path)
        if features is None:
            image = open_rgb(image_path)
            try:
                features = self.extractor.extract(image)
            except DatasetError as error:
                raise DatasetError(f"{image_path}: {error}") from error
            self.forward_passes += 1
            bad = non_finite(features)
            if bad:
                raise FeatureError(f"the {self.kind} features of {image_path} hold NaN or infinite values (layer(s) "
                                   f"{sorted(bad)}); nothing was cached. This happens when a reduced-precision dtype "
                                   f"overflows: run with -p dtype=float32, or check the model weights")
            self._write(path, features, image_path)
        self._memory[key] = features
        if len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        return features

    def _read(self, path: Path, image_path) -> dict[int, torch.Tensor] | None:  # pragma: no mutate block  (cache I/O)
        """The entry's features when it verifies; None (after a warning) when it must be recomputed."""
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as entry:
                metadata = entry.metadata() or {}
                tensors = {key: entry.get_tensor(key) for key in entry.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            log.warning("unreadable cache entry %s (%s); recomputing it", path, error)
            return None
        problem = self.verify(tensors, metadata, self._digest(image_path))
        if problem:
            log.warning("cache entry %s %s; recomputing it", path, problem)
            return None
        return {int(k): v for k, v in tensors.items()}

    def verify(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str], image_sha256: str) -> str | None:  # pragma: no mutate block  (cache I/O)
        """What is wrong with an entry read from disk for the image of ``image_sha256``, or None (module docstring).

        Cheap checks first: format, image, setting, then each tensor's shape and dtype against the
        entry's record and the setting's :attr:`layout`, then the digests, then finiteness.
        """
        if metadata.get("format") != CACHE_FORMAT:
            return f"has format {metadata.get('format')!r}, not {CACHE_FORMAT!r}"
        if metadata.get("image_sha256") != image_sha256:
            return f"belongs to another image (sha256 {metadata.get('image_sha256')}, this image's is {image_sha256})"
        if metadata.get("setting") != self.setting:
            return "was computed with another extractor setting"
        try:
            recorded = json.loads(metadata.get("tensors", ""))
        except ValueError:
            return "has no readable tensor record"
        if not isinstance(recorded, dict) or sorted(recorded) != sorted(tensors):
            return f"holds tensors {sorted(tensors)}, its record lists {sorted(recorded) if isinstance(recorded, dict) else '?'}"
        layout = self.layout
        for key, tensor in sorted(tensors.items()):
            actual = [list(tensor.shape), _dtype_name(tensor)]
            for source, where in ((recorded, "the recorded"), (layout, f"the setting's ({self.folder / 'setting.json'})")):
                if source is None:
                    continue
                expected = source.get(key) if isinstance(source.get(key), dict) else {}
                if [expected.get("shape"), expected.get("dtype")] != actual:
                    return (f"tensor {key}: shape {actual[0]}, dtype {actual[1]} differ from {where} "
                            f"{expected.get('shape')}, {expected.get('dtype')}")
        for key, tensor in sorted(tensors.items()):
            if tensor_digest(tensor) != recorded[key].get("xxh3_128"):
                return f"tensor {key}: its digest differs from the recorded one (the bytes changed)"
        bad = non_finite(tensors)
        if bad:
            return f"holds NaN or infinite values in tensor(s) {bad}"
        return None

    def _write(self, path: Path, features: dict[int, torch.Tensor], image_path) -> None:  # pragma: no mutate block  (cache I/O)
        tensors = {str(k): v for k, v in features.items()}
        record = tensor_record(tensors)
        setting = self.folder / "setting.json"
        if not setting.is_file():
            layout = {key: {"shape": r["shape"], "dtype": r["dtype"]} for key, r in record.items()}
            atomic_write_text(setting, json.dumps({**self._fingerprint, "layout": layout}, indent=1, sort_keys=True),
                              what="the cache setting record", fix=CACHE_FIX)
        atomic_save(tensors, path, metadata={
            "format": CACHE_FORMAT, "kind": self.kind, "source": os.fspath(image_path),
            "image_sha256": self._digest(image_path), "setting": self.setting,
            "tensors": json.dumps(record, sort_keys=True)})

    @property
    def layout(self) -> dict | None:  # pragma: no mutate block  (cache I/O)
        """Shape and dtype of every tensor, as ``setting.json`` records them from the setting's first
        extraction (every image of a setting has the same); None before that."""
        if self._layout is None:
            try:
                layout = json.loads((self.folder / "setting.json").read_text())["layout"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            self._layout = layout if isinstance(layout, dict) else None
        return self._layout

    def prefill(self, image_paths: Iterable[str | os.PathLike], progress: bool = True) -> int:  # pragma: no mutate block  (cache I/O)
        """Make sure every image has an entry; returns how many were extracted now."""
        paths = list(dict.fromkeys(os.fspath(p) for p in image_paths))
        self.remove_stray_tmp()
        before = self.forward_passes
        todo = [p for p in paths if not self.entry_path(p).is_file()]
        for path in tqdm(todo, desc=f"{self.kind} features", unit="img", disable=not progress or not todo):
            self.get(path)
        return self.forward_passes - before

    def remove_stray_tmp(self) -> int:  # pragma: no mutate block  (cache I/O)
        """Delete temporary files that killed writers left in this setting's folder; returns how many."""
        return remove_stray_tmp(self.folder, depth=1)
