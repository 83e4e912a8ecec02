"""List, fetch and verify the datasets of the manifests under a data root (PROTOCOL §11).

Under the root ``R``: archives live in ``R/downloads/`` (``<archive>.part`` while incomplete), files
that fail a checksum are moved to ``R/quarantine/``, datasets are unpacked into ``R/<into>/``, and
sha256 values trusted on first use are kept in ``R/sdfuse-data.lock.json`` (:mod:`sdfuse.data.datalock`).
A manifest sha256, when not null, always wins over the lock. Models are not downloaded here:
they are looked up in the Hugging Face cache.
"""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pooch import file_hash

from ..errors import DatasetError, SdfuseError
from .archives import UnsafeArchiveError, installed_files, unpack
from .datalock import lock_key, lock_path, read_lock, record
from .download import download_first
from .manifests import (FileSpec, LayoutSpec, dataset_files, dataset_layout, display_path, load_manifest,
                        manifest_names)

log = logging.getLogger(__name__)

DOWNLOADS = "downloads"
QUARANTINE = "quarantine"
MIRROR_ENV = "SDFUSE_DATA_MIRROR"
MAX_LISTED = 20
_BY_HAND = "found in downloads/ (placed by hand or by an earlier fetch)"


class ChecksumError(DatasetError):
    """A file does not match its known checksum; it was quarantined."""


class ManualDownloadRequired(DatasetError):
    """A file comes only from a source that needs a person (Google Drive, a record page)."""


@dataclass(frozen=True)
class Status:
    """Whether one manifest's dataset or model is present, and where."""

    name: str
    kind: str
    state: str  # present | incomplete | missing
    where: Path


@dataclass(frozen=True)
class Checked:
    """An archive that passed its checks, and what its sha256 was checked against."""

    archive: str
    sha256: str
    trust: str


@dataclass
class VerifyReport:
    """What ``verify`` found: problems make it fail, notes only inform."""

    name: str
    where: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fix: str | None = None  # the command that repairs the problems, when one does

    @property
    def ok(self) -> bool:
        return not self.problems


def fetch_command(name: str, root: Path) -> str:
    """The exact command that fetches ``name`` into ``root``."""
    return f"sdfuse data fetch {name} --root {root}"


def missing_hint(name: str, root: Path) -> str:
    """What to do about a missing dataset: the manifest to read and the command to type."""
    return f"see {display_path(name)}; get it with: {fetch_command(name, root)}"


def statuses(root: Path) -> list[Status]:
    """The status of every manifest."""
    return [status(name, root) for name in manifest_names()]


def status(name: str, root: Path) -> Status:
    """Whether ``name`` is present (its whole layout holds), incomplete or missing."""
    manifest = load_manifest(name)
    if manifest["kind"] == "model":
        snapshot = hf_snapshot(manifest)
        return Status(name, "model", "present" if snapshot else "missing", snapshot or hf_repo_dir(manifest))
    folder = Path(root).expanduser() / manifest["folder"]
    if not folder.is_dir():
        state = "missing"
    else:
        state = "incomplete" if check_layout(dataset_layout(manifest), Path(root).expanduser()) else "present"
    return Status(name, "dataset", state, folder)


def fetch(name: str, root: Path, mirror: str | None = None, progress: bool = True) -> list[Checked]:
    """Download, check, unpack and layout-check every file of dataset ``name`` under ``root``.

    ``mirror`` (or ``$SDFUSE_DATA_MIRROR``) is a base URL tried before the manifest's URLs.
    Raises :class:`ChecksumError`, :class:`ManualDownloadRequired` or :class:`DatasetError`.
    """
    manifest = _dataset_manifest(name)
    root = Path(root).expanduser()
    checked, manual = [], []
    for spec in dataset_files(manifest):
        candidate, source = _obtain(spec, root, mirror, progress)
        if candidate is None:
            manual.append(spec)
        else:
            checked.append(_accept(name, spec, candidate, root, source))
    if manual:
        raise ManualDownloadRequired(manual_instructions(name, manual, root))
    problems = check_layout(dataset_layout(manifest), root)
    if problems:
        raise DatasetError(f"{name} was unpacked under {root} but its layout does not match {display_path(name)}:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    return checked


def verify(name: str, root: Path) -> VerifyReport:
    """Check layout, counts, and the checksum and contents of every archive kept in ``downloads/``."""
    manifest = load_manifest(name)
    if manifest["kind"] == "model":
        return _verify_model(manifest)
    root = Path(root).expanduser()
    report = VerifyReport(name, root / manifest["folder"])
    if not report.where.is_dir():
        report.problems.append(f"{report.where} does not exist; {missing_hint(name, root)}")
        return report
    lock = read_lock(root)
    for spec in dataset_files(manifest):
        _verify_archive(report, spec, root, lock.get(lock_key(name, spec.archive)))
    report.problems += check_layout(dataset_layout(manifest), root)
    if report.problems:
        report.fix = fetch_command(name, root)
    return report


def check_layout(layout: list[LayoutSpec], root: Path) -> list[str]:
    """Each expected path or glob under ``root``: present, with the expected count and CSV rows."""
    problems = []
    for item in layout:
        found = sorted(root.glob(item.path))
        if item.count is None and not found:
            problems.append(f"missing: {root / item.path}")
        elif item.count is not None and len(found) != item.count:
            problems.append(f"{root / item.path}: expected {item.count}, found {len(found)}")
        if item.rows is not None:
            problems += [f"{path}: expected {item.rows} data rows, found {rows}"
                         for path in found if path.is_file() and (rows := _data_rows(path)) != item.rows]
    return problems


def expected_checksums(spec: FileSpec, lock_entry: dict | None) -> dict[str, tuple[str, str]]:
    """Algorithm -> (hex digest, where it comes from): the manifest's sha256 wins over the lock's."""
    expected = {}
    if spec.sha256:
        expected["sha256"] = (spec.sha256, "manifest")
    elif lock_entry:
        expected["sha256"] = (lock_entry["sha256"], "lock file")
    if spec.md5:
        expected["md5"] = (spec.md5, "manifest")
    return expected


def source_urls(spec: FileSpec, mirror: str | None = None) -> list[str]:
    """Direct-download URLs in the order they are tried: the mirror (if any), then the manifest's."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    return ([f"{mirror.rstrip('/')}/{spec.archive}"] if mirror else []) + list(spec.urls)


def manual_instructions(name: str, specs: list[FileSpec], root: Path) -> str:
    """Step-by-step instructions for files that a person must download."""
    downloads = root / DOWNLOADS
    lines = [f"{name} needs {len(specs)} file(s) that sdfuse does not download (Google Drive and record pages "
             f"are never scraped):"]
    for spec in specs:
        lines.append(f"  {spec.archive}: open " + " or ".join(spec.manual_urls))
        if spec.gdrive_id:
            lines.append(f"    (or, with gdown installed: gdown {spec.gdrive_id} -O {downloads / spec.archive})")
        lines.append(f"    save it as {downloads / spec.archive}")
    lines.append(f"then run `{fetch_command(name, root)}` again to check and unpack it, "
                 f"and `sdfuse data verify {name} --root {root}`.")
    return "\n".join(lines)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("HF_HOME") or cache / "huggingface").expanduser() / "hub"


def hf_repo_dir(manifest: dict) -> Path:
    """The cache folder of a model manifest's repository."""
    return hf_hub_cache() / f"models--{manifest['model_id'].replace('/', '--')}"


def hf_snapshot(manifest: dict) -> Path | None:
    """The cached snapshot of the manifest's model (its pinned revision when it has one), or None."""
    snapshots = hf_repo_dir(manifest) / "snapshots"
    revision = manifest["revision"]
    candidates = [snapshots / revision] if revision else sorted(snapshots.glob("*"))
    return next((path for path in candidates if path.is_dir()), None)


def _dataset_manifest(name: str) -> dict:
    manifest = load_manifest(name)
    if manifest["kind"] == "model":
        raise SdfuseError(f"{name} is a model: sdfuse reads weights from the Hugging Face cache ({hf_hub_cache()}) "
                          f"and does not download them. To get them:\n{manifest['how_to_get'].rstrip()}")
    return manifest


def _obtain(spec: FileSpec, root: Path, mirror: str | None, progress: bool) -> tuple[Path | None, str]:
    """The archive already in ``downloads/``, or a completed ``.part`` download, with its source."""
    archive = root / DOWNLOADS / spec.archive
    if archive.is_file():
        return archive, _BY_HAND
    urls = source_urls(spec, mirror)
    if not urls:
        return None, ""
    part = archive.with_name(archive.name + ".part")
    return part, download_first(urls, part, progress)


def _accept(name: str, spec: FileSpec, candidate: Path, root: Path, source: str) -> Checked:
    """Checksum ``candidate``; quarantine it on a mismatch, else install it and trust it (first use).

    An archive that is unsafe to unpack (:mod:`sdfuse.data.archives`) is quarantined too and never trusted.
    """
    key = lock_key(name, spec.archive)
    expected = expected_checksums(spec, read_lock(root).get(key))
    observed, wrong = _mismatches(candidate, expected)
    if wrong:
        moved = _quarantine(candidate, root, spec.archive, observed["sha256"])
        raise ChecksumError(
            f"{spec.archive} refused, checksum mismatch: {'; '.join(wrong)}. It was moved to {moved} for inspection "
            f"and nothing was unpacked. To download it again: {fetch_command(name, root)}. If the source changed on "
            f"purpose, inspect the file, then update the sha256 in {display_path(name)} or delete the entry "
            f"'{key}' from {lock_path(root)}.")
    archive = root / DOWNLOADS / spec.archive
    candidate.replace(archive)
    if spec.size_bytes is not None and archive.stat().st_size != spec.size_bytes:
        log.warning("%s has %d bytes, the manifest says %d", archive, archive.stat().st_size, spec.size_bytes)
    try:
        _install(name, spec, archive, root)
    except UnsafeArchiveError as error:
        moved = _quarantine(archive, root, spec.archive, observed["sha256"])
        raise UnsafeArchiveError(f"{spec.archive} refused, it is unsafe to unpack: {error}. Nothing was unpacked and "
                                 f"it is not trusted; it was moved to {moved} for inspection. Tell the dataset's "
                                 f"maintainers, or check its source in {display_path(name)}.") from error
    if "sha256" in expected:
        return Checked(spec.archive, observed["sha256"], f"matches the {expected['sha256'][1]}")
    record(root, key, observed["sha256"], archive.stat().st_size, source)
    return Checked(spec.archive, observed["sha256"], f"first use: recorded in {lock_path(root)}")


def _mismatches(path: Path, expected: dict[str, tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Observed digests (always sha256) and a description of every one that differs from ``expected``."""
    observed = {alg: file_hash(str(path), alg=alg) for alg in {"sha256", *expected}}
    wrong = [f"expected {alg} {value} ({origin}), observed {observed[alg]}"
             for alg, (value, origin) in sorted(expected.items()) if observed[alg] != value]
    return observed, wrong


def _quarantine(path: Path, root: Path, archive: str, sha256: str) -> Path:
    """Move a refused file to ``quarantine/<archive>.<sha256 prefix>``."""
    target = root / QUARANTINE / f"{archive}.{sha256[:12]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    log.warning("quarantined %s as %s", path, target)
    return target


def _install(name: str, spec: FileSpec, archive: Path, root: Path) -> None:
    """Unpack (every member checked first, :mod:`sdfuse.data.archives`; without ``__MACOSX/``) or copy into
    ``root/<into>``."""
    dest = root / spec.into
    dest.mkdir(parents=True, exist_ok=True)
    log.info("installing %s into %s", archive, dest)
    try:
        if spec.unpack in ("tar", "zip"):
            unpack(archive, dest, spec.unpack, skip=_is_macos_junk)
        else:
            shutil.copyfile(archive, dest / spec.archive)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DatasetError(f"cannot unpack {archive} as {spec.unpack}: {error}. It may be an error page saved "
                           f"under the archive's name; delete it and run: {fetch_command(name, root)}") from error


def _is_macos_junk(member: str) -> bool:
    return "__MACOSX" in PurePosixPath(member).parts


def _archive_files(spec: FileSpec, archive: Path) -> list[tuple[str, int]]:
    """(path relative to ``into``, size) of every regular file the archive installs."""
    if spec.unpack in ("tar", "zip"):
        return installed_files(archive, spec.unpack, skip=_is_macos_junk)
    return [(spec.archive, archive.stat().st_size)]


def _verify_archive(report: VerifyReport, spec: FileSpec, root: Path, lock_entry: dict | None) -> None:
    """Checksum a kept archive, then compare what it installs with what is on disk."""
    archive = root / DOWNLOADS / spec.archive
    if not archive.is_file():
        report.notes.append(f"{spec.archive} is not kept in {archive.parent}: its checksum and contents "
                            f"were not checked")
        return
    expected = expected_checksums(spec, lock_entry)
    if not expected:
        report.notes.append(f"{spec.archive}: no sha256 known yet (null in the manifest, none in the lock); "
                            f"`{fetch_command(report.name, root)}` records it")
    observed, wrong = _mismatches(archive, expected)
    if wrong:
        report.problems.append(f"corrupted: {archive}: {'; '.join(wrong)}")
        return
    try:
        members = _archive_files(spec, archive)
    except UnsafeArchiveError as error:
        report.problems.append(f"unsafe to unpack: {archive}: {error}")
        return
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        report.problems.append(f"unreadable: {archive}: {error}")
        return
    missing, resized = [], []
    for relative, size in members:
        target = root / spec.into / relative
        if not target.is_file():
            missing.append(str(target))
        elif target.stat().st_size != size:
            resized.append(f"{target} ({target.stat().st_size} bytes, {size} in the archive)")
    if missing:
        report.problems.append(f"missing {len(missing)} file(s) of {spec.archive}:{_listing(missing)}")
    if resized:
        report.problems.append(f"{len(resized)} file(s) differ in size from {spec.archive}:{_listing(resized)}")


def _verify_model(manifest: dict) -> VerifyReport:
    """A model verifies when its (pinned) snapshot is in the Hugging Face cache."""
    snapshot = hf_snapshot(manifest)
    report = VerifyReport(manifest["name"], snapshot or hf_repo_dir(manifest))
    if snapshot is None:
        revision = f" at revision {manifest['revision']}" if manifest["revision"] else ""
        report.problems.append(f"{manifest['model_id']}{revision} is not in the Hugging Face cache "
                               f"{hf_hub_cache()}; to get it:\n{manifest['how_to_get'].rstrip()}")
    return report


def _listing(items: list[str]) -> str:
    """Indented lines, at most ``MAX_LISTED`` of them."""
    more = f"\n      … and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "".join(f"\n      {item}" for item in items[:MAX_LISTED]) + more


def _data_rows(path: Path) -> int:
    """Non-empty lines after one header line."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        return max(sum(1 for line in lines if line.strip()) - 1, 0)
