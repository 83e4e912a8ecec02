"""Resumable HTTP downloads: a ``.part`` file is continued with an HTTP Range request.

pooch's own downloader always starts from zero, so the transfer is done here with ``requests``
(a pooch dependency) and a tqdm progress bar like pooch's. Checksums are the caller's business.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import requests
from tqdm import tqdm

from ..errors import DatasetError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16  # at most this much of an interrupted transfer is lost
TIMEOUT_S = 60


class DownloadError(DatasetError):
    """No source delivered a complete file."""


def download_first(urls: list[str], part: Path, progress: bool = True) -> str:
    """Complete ``part`` from the first of ``urls`` that works; returns that URL.

    A failed source leaves what it delivered in ``part``, and the next source resumes from there.
    """
    failures = []
    for url in urls:
        try:
            download(url, part, progress=progress)
            return url
        except (requests.RequestException, DownloadError) as error:
            log.warning("download from %s failed: %s", url, error)
            failures.append(f"{url}: {error}")
    kept = f"; the {part.stat().st_size} bytes received are kept in {part}" if part.exists() else ""
    raise DownloadError(f"could not download {part.name.removesuffix('.part')} from any source ({'; '.join(failures)})"
                        f"{kept}. Run the same command again to resume.")


def download(url: str, part: Path, progress: bool = True) -> None:
    """Download ``url`` into ``part``, continuing an existing ``part`` when the server honours Range."""
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
        if response.status_code == 416:
            if _server_size(response) == offset:
                return
            log.info("%s does not fit the server's file size: starting again", part.name)
            part.unlink()
            return download(url, part, progress)
        response.raise_for_status()
        if response.status_code == 206:
            if _range_start(response) != offset:
                raise DownloadError(f"{url} answered a request for bytes {offset}- with "
                                    f"{response.headers.get('Content-Range')!r}")
            log.info("resuming %s at byte %d", part.name, offset)
        elif offset:
            log.info("%s does not resume downloads: starting %s again", url, part.name)
            offset = 0
        expected = _total_size(response, offset)
        _stream(response, part, offset, expected, progress)
    if expected is not None and part.stat().st_size != expected:
        raise DownloadError(f"{url} ended after {part.stat().st_size} of {expected} bytes")


def _server_size(response: requests.Response) -> int | None:
    """The file size a 416 response states in ``Content-Range: bytes */SIZE``."""
    match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_start(response: requests.Response) -> int | None:
    """First byte of a 206 response, from ``Content-Range: bytes START-END/TOTAL``."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _total_size(response: requests.Response, offset: int) -> int | None:
    """The complete file's size, when the server says it."""
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None else None


def _stream(response: requests.Response, part: Path, offset: int, total: int | None, progress: bool) -> None:
    """Append the body to ``part`` (or write it anew when ``offset`` is 0) behind a progress bar."""
    with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
            disable=not progress, leave=True) as bar:
        for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))
