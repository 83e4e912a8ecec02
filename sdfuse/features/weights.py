"""Locating model weights: a local folder, or a Hugging Face id (with revision) in the HF cache."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from ..errors import WeightsNotFoundError

_FULL_HASH_LIMIT = 64 << 20  # files up to 64 MiB are hashed whole
_EDGE = 8 << 20


def is_local(model: str) -> bool:
    """True when ``model`` names an existing local folder rather than a hub id."""
    return Path(model).expanduser().is_dir()


def weights_identity(model: str, revision: str | None) -> str:
    """A string that changes when the weights change: hub id@revision, or a digest of a local folder."""
    if is_local(model):
        return "local:" + _folder_digest(str(Path(model).expanduser().resolve()))
    return f"hub:{model}@{revision or cached_commit(model) or 'main'}"


def cached_commit(model: str, ref: str = "main") -> str | None:
    """The commit that ``ref`` of a hub model points to in the local Hugging Face cache, if any."""
    from huggingface_hub.constants import HF_HUB_CACHE

    ref_file = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "refs" / ref
    return ref_file.read_text().strip() if ref_file.is_file() else None


@lru_cache(maxsize=None)
def _folder_digest(folder: str) -> str:
    """sha256 over every file's relative path and content (large files: size, first and last 8 MiB)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with path.open("rb") as handle:
            if size <= _FULL_HASH_LIMIT:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_EDGE))
                handle.seek(size - _EDGE)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def missing_weights(model: str, revision: str | None, what: str, cause: Exception) -> WeightsNotFoundError:
    """The error raised when ``model`` cannot be loaded, with the ways to provide it."""
    rev = revision or "main"
    return WeightsNotFoundError(
        f"Cannot load the {what} weights '{model}' (revision {rev}): {cause}\n"
        f"Provide them in one of two ways:\n"
        f"  - on a machine with network access: huggingface-cli download {model} --revision {rev}\n"
        f"    (they land in the Hugging Face cache, HF_HOME; copy that cache here), or\n"
        f"  - point the profile to a local folder in the same layout: -p {what}_model=/path/to/folder"
    )



def file_identity(path: str) -> str:
    """Identity of one weight file: its size and the sha256 of its first MiB."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"weight file {p} does not exist; check the path you passed")
    with p.open("rb") as handle:
        return f"{p.stat().st_size}:{hashlib.sha256(handle.read(1 << 20)).hexdigest()[:16]}"
