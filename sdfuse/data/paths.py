"""Where sdfuse keeps things, and how a path is shown to a reader.

The book, the run records and the provenance never show a machine's absolute path:
:func:`display_path` writes a path relative to the book's folder or the repository, or under
``$SDFUSE_DATA``, ``$SDFUSE_HOME``, Python's prefix (``<sys.prefix>``) or the user's home (``~``),
whichever holds it most closely; :func:`display_text` does the same to every such path inside a
message (an exception, a traceback). A path outside all of them is shown as it is. This module
imports nothing heavy.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository (or installation) folder that holds the ``sdfuse`` package."""
BOOK_MARKER = "_toc.yml"


def sdfuse_home() -> Path:
    """Where sdfuse keeps its cache and smoke assets: $SDFUSE_HOME, else ~/.cache/sdfuse."""
    return Path(os.environ.get("SDFUSE_HOME", Path.home() / ".cache" / "sdfuse")).expanduser()


def data_home() -> Path:
    """Where the real datasets live: $SDFUSE_DATA, else <sdfuse home>/data."""
    return Path(os.environ.get("SDFUSE_DATA", sdfuse_home() / "data")).expanduser()


def book_folder(start: str | os.PathLike | None = None) -> Path | None:
    """The book's folder: the nearest of ``start`` (default: the working folder) and its parents that
    holds ``_toc.yml``; None when there is none (the notebooks run in ``<book>/book/tables``)."""
    here = Path(start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / BOOK_MARKER).is_file()), None)


def _bases(root: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """(folder, how it is written) of every folder a path is shown under, the deepest first; "" is
    "relative to it". Each folder appears as given and resolved (links followed)."""
    named = [(Path(root).resolve() if root else book_folder(), ""), (REPO, ""), (data_home(), "$SDFUSE_DATA"),
             (sdfuse_home(), "$SDFUSE_HOME"), (Path(sys.prefix), "<sys.prefix>"), (Path.home(), "~")]
    found = {}
    for folder, prefix in named:
        if folder is None or len(Path(folder).absolute().parts) < 2:      # never "/" itself
            continue
        for form in (Path(folder).absolute(), Path(folder).resolve()):
            found.setdefault(form, prefix)
    return sorted(found.items(), key=lambda item: -len(item[0].parts))


def display_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """``path`` as the book shows it (module docstring); ``root``: the book's folder when it is not
    found from the working folder. A relative path is returned as it is."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        return path.as_posix()
    candidates = {Path(os.path.normpath(path)), path.resolve()}
    for base, prefix in _bases(root):
        for candidate in candidates:
            if candidate.is_relative_to(base):
                rest = candidate.relative_to(base).as_posix()
                if not prefix:
                    return rest
                return prefix if rest == "." else f"{prefix}/{rest}"
    return str(path)


def display_text(text: str, root: str | os.PathLike | None = None) -> str:
    """``text`` with every path under one of :func:`display_path`'s folders written as it writes it."""
    for base, prefix in _bases(root):
        folder = re.escape(str(base))
        text = re.sub(folder + "/", f"{prefix}/" if prefix else "", text)
        text = re.sub(folder + r"(?![\w.\-/])", prefix or ".", text)
    return text


def display_values(values: dict, root: str | os.PathLike | None = None) -> dict:
    """``values`` (run parameters) with every string that is an absolute path in :func:`display_path`'s form."""
    return {key: display_path(value, root) if isinstance(value, str) and Path(value).expanduser().is_absolute()
            else value for key, value in values.items()}
