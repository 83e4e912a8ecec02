"""Locating model weights: a local folder, or a Hugging Face id (with revision) in the HF cache.

Loading never waits on a network that is not there (:func:`local_weights`): a local folder or a
revision already in the Hugging Face cache is loaded from disk with ``local_files_only`` (no
request at all); otherwise, when ``HF_HUB_OFFLINE`` is set or the hub does not answer an HTTP
request within :data:`HUB_PROBE_TIMEOUT_S` seconds (``$SDFUSE_HUB_TIMEOUT``), loading fails at
once with :func:`missing_weights` instead of after huggingface_hub's retries (about 25 s per model).
Weights are read only from safetensors files, or with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
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


def _probe_timeout(default: float = 3.0) -> float:
    try:
        value = float(os.environ.get("SDFUSE_HUB_TIMEOUT", default))
    except ValueError:
        return default
    return value if value > 0 else default


HUB_PROBE_TIMEOUT_S = _probe_timeout()
"""How long to wait for the hub to answer before calling it unreachable ($SDFUSE_HUB_TIMEOUT, default 3 s)."""


def cached_snapshot(model: str, revision: str | None) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``model`` at ``revision`` (commit, branch or tag), if any."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}"
    ref = revision or "main"
    commit = ref if (repo / "snapshots" / ref).is_dir() else cached_commit(model, ref)
    snapshot = repo / "snapshots" / commit if commit else None
    return snapshot if snapshot is not None and snapshot.is_dir() else None


def hub_offline() -> bool:
    """True when huggingface_hub is in offline mode (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)


@lru_cache(maxsize=None)
def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers an HTTP HEAD request within ``timeout`` s, else why not.

    Any HTTP answer counts (proxies from the environment are used, as huggingface_hub would).
    The probe runs in a daemon thread so that a slow DNS lookup cannot hold it past ``timeout``;
    the answer is kept for the life of the process.
    """
    import requests
    from huggingface_hub.constants import ENDPOINT

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            requests.head(ENDPOINT, timeout=timeout, allow_redirects=False)
            outcome.append(None)
        except requests.Timeout:
            outcome.append(f"the hub {ENDPOINT} did not answer within {timeout:g} s")
        except requests.RequestException as error:
            outcome.append(f"the hub {ENDPOINT} is unreachable ({type(error).__name__}: {str(error)[:160]})")

    start = time.perf_counter()
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not outcome:
        return f"the hub {ENDPOINT} did not answer within {time.perf_counter() - start:.1f} s"
    return outcome[0]


def local_weights(model: str, revision: str | None, what: str) -> tuple[str, bool]:
    """Where to load ``model`` from without waiting on an absent network: (source, local only).

    - a local folder: (folder, True);
    - a hub id whose ``revision`` is in the Hugging Face cache: (its snapshot folder, True), so
      loading makes no network request;
    - otherwise, offline (``HF_HUB_OFFLINE``) or hub unreachable: :func:`missing_weights` is raised
      at once, before any file is created;
    - otherwise (model id, False): huggingface_hub downloads it into its cache (partial downloads
      are ``.incomplete`` blobs that it resumes and never loads).
    """
    if is_local(model):
        return str(Path(model).expanduser()), True
    snapshot = cached_snapshot(model, revision)
    if snapshot is not None:
        return str(snapshot), True
    from huggingface_hub.constants import HF_HUB_CACHE

    absent = f"it is not in the Hugging Face cache ({HF_HUB_CACHE})"
    if hub_offline():
        raise missing_weights(model, revision, what, RuntimeError(f"{absent} and HF_HUB_OFFLINE is set"))
    why = hub_unreachable()
    if why:
        raise missing_weights(model, revision, what, RuntimeError(f"{absent} and {why}"))
    return model, False


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
