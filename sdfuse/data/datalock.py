"""The user-side lock file ``<data root>/sdfuse-data.lock.json``: sha256 values trusted on first use.

Format::

    {"format": "sdfuse-data-lock/1",
     "files": {"<manifest>/<archive>": {"sha256": "<64 hex>", "size_bytes": 123,
                                        "source": "<url, or 'placed by hand'>",
                                        "recorded_utc": "2025-01-31T12:00:00Z"}}}

An entry is written once, when a file without a manifest sha256 first passes its checks; it is
never overwritten. To trust a changed file deliberately, delete its entry by hand.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DatasetError

LOCK_NAME = "sdfuse-data.lock.json"
LOCK_FORMAT = "sdfuse-data-lock/1"


def lock_path(root: Path) -> Path:
    """The lock file of a data root."""
    return Path(root) / LOCK_NAME


def lock_key(manifest: str, archive: str) -> str:
    """The key of one file in the lock."""
    return f"{manifest}/{archive}"


def read_lock(root: Path) -> dict[str, dict]:
    """The lock's entries (empty when there is no lock file yet)."""
    path = lock_path(root)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON ({error}); repair it or move it away "
                           f"(every sha256 in it would then be trusted again on first use)") from error
    if data.get("format") != LOCK_FORMAT:
        raise DatasetError(f"{path} has format {data.get('format')!r}, expected {LOCK_FORMAT!r}")
    return data["files"]


def record(root: Path, key: str, sha256: str, size_bytes: int, source: str) -> None:
    """Add one entry, written atomically; an existing entry is an error, never overwritten."""
    files = read_lock(root)
    if key in files:
        raise DatasetError(f"{lock_path(root)} already records {key}; it is never overwritten")
    files[key] = {"sha256": sha256, "size_bytes": size_bytes, "source": source,
                  "recorded_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    path = lock_path(root)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": LOCK_FORMAT, "files": dict(sorted(files.items()))}, indent=2) + "\n")
    os.replace(tmp, path)
