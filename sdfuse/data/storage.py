"""Crash-safe file writes: temporary name, fsync, rename; and what a failed write says.

Every artifact sdfuse writes (feature-cache entries, results CSVs, run records) goes through
:func:`atomic_write`: the bytes land in ``.tmp-<pid>-<host>-<random>.part`` in the destination's
folder, are fsync'ed, and the file is renamed over the destination, then the folder is fsync'ed.
A reader therefore sees the previous complete file or the new complete file, never a prefix,
even when the writer is SIGKILLed or the disk fills up halfway. A killed writer can leave its
``.part`` file behind; no reader looks at those names (they never end in the destination's
suffix), and :func:`remove_stray_tmp` deletes the ones whose writer is gone. The final file has the
permissions of a file the process creates (``0o666`` less the umask), as ``open()`` would give it,
so a cache shared between users works as their umask says.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..errors import StorageError

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".part"
STALE_AFTER_S = 24 * 3600
"""A temporary file older than this is removed even when its writer may live on another host."""
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def tmp_prefix() -> str:
    """Prefix of this process's temporary files: ``.tmp-<pid>-<host hash>-``."""
    return f"{TMP_PREFIX}{os.getpid()}-{_host_tag()}-"


def storage_error(error: OSError, path: Path, what: str, fix: str) -> StorageError:
    """A :class:`StorageError` for a failed write of ``path`` that says why and what to do."""
    folder = Path(path).parent
    if error.errno in _DISK_FULL:
        try:
            free = _human(shutil.disk_usage(_existing(folder)).free) + " free"
        except OSError:
            free = "free space unknown"
        return StorageError(f"the disk is full: could not write {what} {path} ({free} on the file system "
                            f"of {folder}). Nothing partial was left behind. Free some space there, or {fix}.")
    if error.errno in _NOT_WRITABLE:
        return StorageError(f"cannot write {what} {path}: {error.strerror or error} (the folder {folder} is not "
                            f"writable). Fix its permissions, or {fix}.")
    return StorageError(f"cannot write {what} {path}: {error.strerror or error}. Nothing partial was left "
                        f"behind; fix the cause, or {fix}.")


def _human(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def process_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)                                         # elsewhere: read it by setting it back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, what: str = "file",
                 fix: str = "write somewhere else") -> Path:
    """Create or replace ``path`` atomically: ``write(tmp_name)`` fills a temporary file in the same folder.

    The temporary file gets the permissions of the process umask, is fsync'ed and renamed over
    ``path``; on any failure (an exception, a full disk, Ctrl-C) it is removed and ``path`` keeps its
    previous content. ``OSError`` becomes :class:`~sdfuse.errors.StorageError` naming ``path``
    (``what`` says what it is, ``fix`` what else the user can do).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(), suffix=TMP_SUFFIX)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~process_umask())   # mkstemp made it 0600
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as error:
        raise storage_error(error, path, what, fix) from error
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, **kwargs) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), **kwargs)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def this_process() -> dict:
    """This process as :func:`process_alive` takes it: its pid and a hash of its host name."""
    return {"pid": os.getpid(), "host": _host_tag()}


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether process ``pid`` on ``host`` (:func:`this_process`) may still run: False only when it is
    known to be gone (on this host, no such process; or no pid at all)."""
    if not isinstance(pid, int):
        return False
    if host != _host_tag() or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_gone(name: str, now: float, mtime: float) -> bool:
    """Whether the writer of temporary file ``name`` is gone: dead on this host, or the file is stale."""
    if now - mtime > STALE_AFTER_S:
        return True
    parts = name[len(TMP_PREFIX):].split("-")
    if len(parts) < 3 or not parts[0].isdigit() or parts[1] != _host_tag():
        return False
    return not process_alive(int(parts[0]), parts[1])


def remove_stray_tmp(folder: str | os.PathLike, depth: int = 1) -> int:
    """Delete temporary files left in ``folder`` (and ``depth`` levels below) by writers that died.

    A file is removed when its writer's process no longer exists on this host, or when it is
    older than :data:`STALE_AFTER_S`; files of live writers (another process filling the same
    cache) are left alone. Returns how many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    patterns = [f"{TMP_PREFIX}*{TMP_SUFFIX}"] + ["/".join(["*"] * level + [f"{TMP_PREFIX}*{TMP_SUFFIX}"])
                                                for level in range(1, depth + 1)]
    now = time.time()
    removed = 0
    for pattern in patterns:
        for tmp in folder.glob(pattern):
            try:
                if _writer_gone(tmp.name, now, tmp.stat().st_mtime):
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    if removed:
        log.info("removed %d temporary file(s) left by interrupted writers in %s", removed, folder)
    return removed
