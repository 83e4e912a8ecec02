"""The YAML manifests of ``data_manifests/``: where datasets and weights come from, checked against one schema.

Every manifest has ``name`` (its file stem), ``kind`` (``dataset`` or ``model``), ``licence``,
``citation`` and ``how_to_get``. A model adds ``model_id`` and ``revision`` (a Hugging Face repo,
``null`` when not pinned). A dataset adds:

- ``folder``: the folder it occupies under the data root;
- ``files``: what to download, each with ``archive`` (file name), ``urls`` (direct downloads: primary
  first, then known mirrors), ``gdrive_id`` and ``pages`` (sources that need a person),
  ``size_bytes`` and ``sha256`` (``null`` when unknown), an optional extra ``md5``, ``unpack``
  (``tar``, ``zip`` or ``none``) and ``into`` (a folder relative to the root, default ``.``);
- ``layout``: glob patterns relative to the root, each with an optional exact ``count`` of matches
  (a trailing ``/`` matches folders only) and an optional ``rows`` (data rows after one header line).

The folder defaults to ``data_manifests/`` and is overridden by ``$SDFUSE_MANIFESTS``.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from ..errors import SdfuseError
from . import paths

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
MANIFEST_DIR_ENV = "SDFUSE_MANIFESTS"

_NONE = type(None)
_COMMON = {"name": str, "kind": str, "licence": str, "citation": str, "how_to_get": str}
_OPTIONAL = {"notes": str}
_MODEL = {"model_id": str, "revision": (str, _NONE)}
_MODEL_OPTIONAL = {"subfolders": list, "files_used": str, "reference_weights": str}
_DATASET = {"folder": str, "files": list, "layout": list}
_FILE = {"archive": str, "unpack": str, "size_bytes": (int, _NONE), "sha256": (str, _NONE)}
_FILE_OPTIONAL = {"urls": list, "gdrive_id": (str, _NONE), "pages": list, "md5": (str, _NONE), "into": str,
                  "notes": str}
_LAYOUT = {"path": str}
_LAYOUT_OPTIONAL = {"count": (int, _NONE), "rows": (int, _NONE), "notes": str}
_HEX_DIGITS = {"sha256": 64, "md5": 32}
UNPACK_KINDS = ("tar", "zip", "none")


class ManifestError(SdfuseError):
    """A manifest is unknown, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset manifest: where it comes from, its checksums, how it is installed."""

    archive: str
    unpack: str
    urls: tuple[str, ...] = ()
    gdrive_id: str | None = None
    pages: tuple[str, ...] = ()
    size_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None
    into: str = "."

    @classmethod
    def from_dict(cls, entry: dict) -> FileSpec:
        """The spec of a (validated) ``files`` entry."""
        return cls(archive=entry["archive"], unpack=entry["unpack"], urls=tuple(entry.get("urls") or ()),
                   gdrive_id=entry.get("gdrive_id"), pages=tuple(entry.get("pages") or ()),
                   size_bytes=entry["size_bytes"], sha256=entry["sha256"], md5=entry.get("md5"),
                   into=entry.get("into", "."))

    @property
    def manual_urls(self) -> list[str]:
        """Pages a person has to open (Google Drive, record pages): sdfuse never scrapes them."""
        drive = [f"https://drive.google.com/uc?id={self.gdrive_id}"] if self.gdrive_id else []
        return drive + list(self.pages)


@dataclass(frozen=True)
class LayoutSpec:
    """One expected path (glob) under the data root, with an optional exact match count or CSV row count."""

    path: str
    count: int | None = None
    rows: int | None = None

    @classmethod
    def from_dict(cls, entry: dict) -> LayoutSpec:
        """The spec of a (validated) ``layout`` entry."""
        return cls(path=entry["path"], count=entry.get("count"), rows=entry.get("rows"))


def manifest_dir() -> Path:
    """The manifest folder: ``$SDFUSE_MANIFESTS`` when set, else the repository's ``data_manifests/``."""
    return Path(os.environ.get(MANIFEST_DIR_ENV) or MANIFEST_DIR).expanduser()


def manifest_names() -> list[str]:
    """Names of every manifest in the manifest folder, sorted."""
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))


def manifest_path(name: str) -> Path:
    """The file of manifest ``name`` (which may not exist)."""
    return manifest_dir() / f"{name}.yaml"


def display_path(name: str) -> str:
    """The file of manifest ``name`` as a reader is shown it (``data_manifests/<name>.yaml`` for the
    repository's manifests; :func:`sdfuse.data.paths.display_path`)."""
    return paths.display_path(manifest_path(name))


def load_manifest(name: str) -> dict:
    """The manifest ``<name>.yaml`` as a dict, after the schema check."""
    path = manifest_path(name)
    if name not in manifest_names():                               # also refuses names that are paths ("../x")
        raise ManifestError(f"no manifest named {name!r} in {manifest_dir()}; known: {', '.join(manifest_names())} "
                            f"(see: sdfuse data list)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ManifestError(f"{path} is not valid YAML: {error}") from error
    problems = validate_manifest(data, name)
    if problems:
        raise ManifestError(f"{display_path(name)} does not follow the manifest schema: {'; '.join(problems)}. "
                            f"Fix the file (schema: sdfuse.data.manifests module docstring).")
    return data


def dataset_files(manifest: dict) -> list[FileSpec]:
    """The ``files`` of a dataset manifest."""
    return [FileSpec.from_dict(entry) for entry in manifest["files"]]


def dataset_layout(manifest: dict) -> list[LayoutSpec]:
    """The ``layout`` of a dataset manifest."""
    return [LayoutSpec.from_dict(entry) for entry in manifest["layout"]]


def manifest_digests() -> dict[str, str]:
    """sha256 of every manifest file, for provenance."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(manifest_dir().glob("*.yaml"))}


def validate_manifest(data: object, name: str) -> list[str]:
    """Every way ``data`` (the parsed ``<name>.yaml``) breaks the schema; empty when it is valid."""
    if not isinstance(data, dict):
        return ["the file must hold a mapping"]
    kind = data.get("kind")
    if kind == "model":
        problems = _check_keys(data, {**_COMMON, **_MODEL}, {**_OPTIONAL, **_MODEL_OPTIONAL}, "")
    elif kind == "dataset":
        problems = _check_keys(data, {**_COMMON, **_DATASET}, _OPTIONAL, "")
        if not problems:
            problems = _check_dataset(data)
    else:
        return [f"kind must be one of ['dataset', 'model'], got {kind!r}"]
    if data.get("name") != name:
        problems.append(f"name {data.get('name')!r} must equal the file name {name!r}")
    return problems


def _check_keys(obj: object, required: dict, optional: dict, where: str) -> list[str]:
    """Missing, unknown and mistyped keys of the mapping ``obj``."""
    if not isinstance(obj, dict):
        return [f"{where or 'the manifest'} must be a mapping"]
    problems = [f"{where}{key}: missing" for key in required if key not in obj]
    problems += [f"{where}{key}: unknown key (allowed: {', '.join(sorted({**required, **optional}))})"
                 for key in obj if key not in required and key not in optional]
    for key, types in {**required, **optional}.items():
        value = obj.get(key)
        if key in obj and (not isinstance(value, types) or isinstance(value, bool)):
            problems.append(f"{where}{key}: {type(value).__name__} is not {_type_names(types)}")
    return problems


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is _NONE else t.__name__ for t in types)


def _check_dataset(data: dict) -> list[str]:
    """Value checks of a dataset manifest whose keys and types are right."""
    problems = _check_relative(data["folder"], "folder")
    if not data["files"]:
        problems.append("files: at least one file is needed")
    archives = [entry.get("archive") for entry in data["files"] if isinstance(entry, dict)]
    problems += [f"files: archive {a!r} is listed twice" for a in sorted(set(archives)) if archives.count(a) > 1]
    for i, entry in enumerate(data["files"]):
        problems += _check_file(entry, f"files[{i}].")
    if not data["layout"]:
        problems.append("layout: at least one expected path is needed")
    for i, entry in enumerate(data["layout"]):
        where = f"layout[{i}]."
        found = _check_keys(entry, _LAYOUT, _LAYOUT_OPTIONAL, where)
        if not found:
            found = _check_relative(entry["path"], where + "path")
            found += [f"{where}{key}: must be >= 0" for key in ("count", "rows") if (entry.get(key) or 0) < 0]
        problems += found
    return problems


def _check_file(entry: object, where: str) -> list[str]:
    """Value checks of one ``files`` entry."""
    problems = _check_keys(entry, _FILE, _FILE_OPTIONAL, where)
    if problems:
        return problems
    if "/" in entry["archive"] or entry["archive"] in ("", ".", ".."):
        problems.append(f"{where}archive: must be a plain file name, got {entry['archive']!r}")
    if entry["unpack"] not in UNPACK_KINDS:
        problems.append(f"{where}unpack: must be one of {list(UNPACK_KINDS)}, got {entry['unpack']!r}")
    for alg, digits in _HEX_DIGITS.items():
        if entry.get(alg) is not None and not re.fullmatch(f"[0-9a-f]{{{digits}}}", entry[alg]):
            problems.append(f"{where}{alg}: must be {digits} lowercase hex digits or null")
    if entry["size_bytes"] is not None and entry["size_bytes"] <= 0:
        problems.append(f"{where}size_bytes: must be positive or null")
    for key in ("urls", "pages"):
        problems += [f"{where}{key}: {url!r} is not an http(s) URL" for url in entry.get(key) or ()
                     if not (isinstance(url, str) and url.startswith(("http://", "https://")))]
    if not (entry.get("urls") or entry.get("gdrive_id") or entry.get("pages")):
        problems.append(f"{where.rstrip('.')}: needs a source: urls, gdrive_id or pages")
    return problems + _check_relative(entry.get("into", "."), where + "into")


def _check_relative(path: str, where: str) -> list[str]:
    """A path must stay inside the data root."""
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts:
        return [f"{where}: {path!r} must be a relative path inside the data root"]
    return []
