"""Unpacking dataset archives without trusting them: tar and zip, the same on every supported Python.

``tarfile``'s ``filter="data"`` cannot be relied on: before the fix of CPython gh-135034 (in
3.11.7 among others) a chain of symbolic links makes ``os.path.realpath`` give up at PATH_MAX, so
a link that leads outside looks inside (CVE-2025-4517), and ``zipfile`` silently rewrites unsafe
names instead of refusing them. sdfuse therefore never calls ``extractall``. It first checks every
member against the archive's own listing, asking nothing of the file system (:func:`_plan`):

- a name is relative, non-empty, without ``..``, a backslash or NUL, no component over 255 bytes;
- a member is a regular file, a folder, a symbolic link (tar) or a hard link (tar); device
  files, FIFOs and anything else are refused;
- no member lies below another member that is a symbolic link or a file (no write-through);
- a symbolic link's target is relative and, resolved lexically through the archive's own links
  (at most :data:`MAX_LINK_HOPS`, as Linux), stays inside the destination;
- a hard link names an earlier regular file of the archive (it is unpacked as a copy of it);
- a name appears once (folders excepted).

Only then is anything written, without ever following a symbolic link: every folder on the way is
opened with ``O_NOFOLLOW`` relative to its parent, so a link already in the destination is refused
too. Files are written to a temporary name and renamed, with mode 0644 (0755 when executable in the
archive) under the process umask, never set-id bits or ownership. A refused archive writes nothing;
a write that fails later (a full disk) leaves only complete files, all inside the destination.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, IO

from ..errors import DatasetError
from .storage import TMP_SUFFIX, storage_error, tmp_prefix

MAX_LINK_HOPS = 40
"""Symbolic links followed while resolving one target before it is refused (Linux's MAXSYMLINKS)."""
MAX_NAME_BYTES = 255
"""Longest file-name component (NAME_MAX on Linux and macOS)."""


class UnsafeArchiveError(DatasetError):
    """An archive member would escape the destination or is not a plain file, folder or link."""


@dataclass(frozen=True)
class Member:
    """One archive member as it will be written: normalised path components and what it is."""

    name: str
    parts: tuple[str, ...]
    kind: str  # file | dir | symlink | hardlink
    link: tuple[str, ...] = ()  # symlink: target components (may hold ".."); hardlink: the target's parts
    executable: bool = False
    source: object = None  # the TarInfo or ZipInfo whose data a file (or hard link) holds


def _refuse(member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"member {member!r} {why}")


def _components(name: str, member: str, what: str = "its name") -> tuple[str, ...]:
    """Path components of a member name or link target; '' and '.' dropped, the rest checked."""
    if "\x00" in name or "\\" in name:
        raise _refuse(member, f"has a NUL or a backslash in {what}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if name.startswith("/") or (parts and len(parts[0]) == 2 and parts[0][1] == ":" and parts[0][0].isalpha()):
        raise _refuse(member, f"has an absolute path as {what} ({name!r})")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        raise _refuse(member, f"has a path component over {MAX_NAME_BYTES} bytes in {what}")
    return parts


def _tar_members(tar: tarfile.TarFile) -> list[Member]:
    members = []
    for info in tar.getmembers():
        parts = _components(info.name, info.name)
        if ".." in parts:
            raise _refuse(info.name, "climbs out with '..'")
        if info.isreg():
            members.append(Member(info.name, parts, "file", executable=bool(info.mode & 0o100), source=info))
        elif info.isdir():
            members.append(Member(info.name, parts, "dir"))
        elif info.issym():
            if not info.linkname:
                raise _refuse(info.name, "is a symbolic link with an empty target")
            members.append(Member(info.name, parts, "symlink", _components(info.linkname, info.name, "its target")))
        elif info.islnk():
            target = _components(info.linkname, info.name, "its target")
            if ".." in target:
                raise _refuse(info.name, f"is a hard link that climbs out with '..' ({info.linkname!r})")
            members.append(Member(info.name, parts, "hardlink", target))
        else:
            kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                    tarfile.FIFOTYPE: "a FIFO"}.get(info.type, f"of tar type {info.type!r}")
            raise _refuse(info.name, f"is {kind}, not a file, folder or link")
    return members


def _zip_members(zipped: zipfile.ZipFile, skip: Callable[[str], bool]) -> list[Member]:
    members = []
    for info in zipped.infolist():
        if skip(info.filename):
            continue
        parts = _components(info.filename, info.filename)
        if ".." in parts:
            raise _refuse(info.filename, "climbs out with '..' (zip slip)")
        mode = info.external_attr >> 16
        if info.is_dir():
            members.append(Member(info.filename, parts, "dir"))
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):      # some tools store the permission bits only
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "a device file, FIFO or socket"
            raise _refuse(info.filename, f"is {kind}; sdfuse unpacks only files and folders from zip archives")
        else:
            members.append(Member(info.filename, parts, "file", executable=bool(mode & 0o100), source=info))
    return members


def _resolve(parts: tuple[str, ...], links: dict[tuple[str, ...], tuple[str, ...]], member: str) -> tuple[str, ...]:
    """``parts`` (relative to the destination, may hold '..') with the archive's links resolved lexically."""
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not resolved:
                raise _refuse(member, "is a symbolic link that leads outside the destination")
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get(tuple(resolved))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise _refuse(member, f"is a symbolic link through more than {MAX_LINK_HOPS} others")
            resolved.pop()
            pending = list(target) + pending
    return tuple(resolved)


def _plan(members: list[Member]) -> list[Member]:
    """Check the whole listing (module docstring); returns the members to write, links last."""
    kinds: dict[tuple[str, ...], str] = {}
    for member in members:
        if not member.parts:
            if member.kind != "dir":
                raise _refuse(member.name, "has an empty name")
            continue
        previous = kinds.get(member.parts)
        if previous is not None and not (previous == member.kind == "dir"):
            raise _refuse(member.name, "appears twice in the archive")
        if member.kind == "hardlink" and kinds.get(member.link) != "file":
            raise _refuse(member.name, f"is a hard link to {'/'.join(member.link)!r}, which is not an earlier "
                                       f"regular file of the archive")
        kinds[member.parts] = member.kind
    for member in members:
        for depth in range(1, len(member.parts)):
            above = kinds.get(member.parts[:depth])
            if above not in (None, "dir"):
                raise _refuse(member.name, f"lies below {'/'.join(member.parts[:depth])!r}, which is a {above}: "
                                           f"it would be written through it")
    links = {m.parts: m.link for m in members if m.kind == "symlink"}
    for member in members:
        if member.kind == "symlink":
            _resolve(member.parts[:-1] + member.link, links, member.name)
    sources = {m.parts: m.source for m in members if m.kind == "file"}
    planned = [m if m.kind != "hardlink" else Member(m.name, m.parts, "file", source=sources[m.link])
               for m in members if m.parts]
    return sorted(planned, key=lambda m: m.kind == "symlink")


class _Writer:
    """Writes planned members under ``dest`` without following any symbolic link."""

    def __init__(self, dest: Path, archive: Path, open_data: Callable[[object], IO[bytes]]):
        self.dest, self.archive, self.open_data = dest, archive, open_data
        self._root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        if self._cached:
            os.close(self._cached[1])
        os.close(self._root)

    def _folder(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the folder ``parts`` (created as needed); refuses a link or file on the way."""
        if self._cached and self._cached[0] == parts:
            return self._cached[1]
        fd = os.dup(self._root)
        try:
            for depth, part in enumerate(parts, start=1):
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise DatasetError(
                            f"{self.dest / '/'.join(parts[:depth])} exists and is a symbolic link or a file: "
                            f"{self.archive.name} would be written through it; move it away and fetch again") from error
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        if self._cached:
            os.close(self._cached[1])
        self._cached = (parts, fd)
        return fd

    def write(self, member: Member) -> None:
        folder = self._folder(member.parts[:-1])
        name = member.parts[-1]
        if member.kind == "dir":
            self._folder(member.parts)
            return
        tmp = f"{tmp_prefix()}{os.urandom(4).hex()}{TMP_SUFFIX}"
        try:
            if member.kind == "symlink":
                os.symlink("/".join(member.link), tmp, dir_fd=folder)
            else:
                mode = 0o755 if member.executable else 0o644  # the umask applies
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=folder)
                with os.fdopen(fd, "wb") as out, self.open_data(member.source) as data:
                    shutil.copyfileobj(data, out, 1 << 20)
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            tmp = None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=folder)
                except OSError:
                    pass


def _write(members: list[Member], dest: Path, archive: Path, open_data: Callable[[object], IO[bytes]]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest, archive, open_data)
    try:
        for member in members:
            try:
                writer.write(member)
            except OSError as error:
                raise storage_error(error, dest / "/".join(member.parts), f"member {member.name!r} of {archive.name} as",
                                    "unpack the archive by hand into a folder with space") from error
    finally:
        writer.close()


@contextmanager
def _checked(archive: Path, kind: str, skip: Callable[[str], bool]):
    """The planned members of a ``tar`` or ``zip`` archive and the function that opens a member's data."""
    if kind == "tar":
        with tarfile.open(archive) as tar:
            yield _plan(_tar_members(tar)), tar.extractfile
    elif kind == "zip":
        with zipfile.ZipFile(archive) as zipped:
            yield _plan(_zip_members(zipped, skip)), zipped.open
    else:
        raise ValueError(f"unknown archive kind {kind!r}")


def unpack(archive: Path, dest: Path, kind: str, skip: Callable[[str], bool] = lambda name: False) -> int:
    """Check every member of the ``kind`` (tar, any compression, or zip) ``archive``, then write them under ``dest``.

    Members for which ``skip(name)`` holds are left out (zip only). Returns the number of members
    written. Raises :class:`UnsafeArchiveError` (nothing written) for a member that fails a check of
    the module docstring; :class:`~sdfuse.errors.DatasetError` for a symbolic link or file already
    in ``dest`` on a member's way; ``tarfile.TarError``, ``zipfile.BadZipFile`` and ``OSError`` for
    an unreadable archive; :class:`~sdfuse.errors.StorageError` for a failed write.
    """
    if os.open not in os.supports_dir_fd:
        raise DatasetError(f"safe unpacking needs a POSIX system (openat); unpack {archive} by hand into {dest}")
    with _checked(archive, kind, skip) as (members, open_data):
        _write(members, dest, archive, open_data)
    return len(members)


def installed_files(archive: Path, kind: str, skip: Callable[[str], bool] = lambda name: False) -> list[tuple[str, int]]:
    """(path relative to the destination, size) of every regular file :func:`unpack` writes (hard links
    as copies), after the same checks."""
    with _checked(archive, kind, skip) as (members, _):
        return [("/".join(m.parts), m.source.size if kind == "tar" else m.source.file_size)
                for m in members if m.kind == "file"]
