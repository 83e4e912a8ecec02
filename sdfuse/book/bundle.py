"""The results bundle: one zip beside each results folder (``results/<profile>.zip``), served by the book.

It holds everything a run wrote to its results folder, under the folder's name: every table
(``*.csv``), the records each is computed from (``*.csv.gz``, :mod:`sdfuse.evaluation.records`), their
provenance (``*.provenance.json``) and the run record (``runs.json``, :mod:`sdfuse.book.run_record`); and
the benchmark (``benchmark/benchmark.json``) when ``make bench`` wrote one. :func:`sdfuse.book.runner.reproduce`
writes it after the tables and again after the summary pages; the run page links to it. The zip is
written atomically and its bytes depend only on the files (sorted names, fixed time stamps).
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from ..data.storage import atomic_write
from .run_record import RECORD

PATTERNS = ("*.csv", "*.csv.gz", "*.provenance.json", RECORD)
BENCHMARK = Path("benchmark") / "benchmark.json"
"""The benchmark result, relative to the folder above the results folder (``results/``)."""
_EPOCH = (1980, 1, 1, 0, 0, 0)


def bundle_path(results_dir: str | Path) -> Path:
    """The bundle of a results folder: ``<folder>.zip`` beside it (``results/smoke`` → ``results/smoke.zip``)."""
    results_dir = Path(results_dir)
    return results_dir.with_name(results_dir.name + ".zip")


def members(results_dir: str | Path) -> dict[str, Path]:
    """Name in the zip → file, for every file the bundle of ``results_dir`` holds (module docstring)."""
    results_dir = Path(results_dir)
    files = sorted({path for pattern in PATTERNS for path in results_dir.glob(pattern) if path.is_file()})
    found = {f"{results_dir.name}/{path.name}": path for path in files}
    benchmark = results_dir.parent / BENCHMARK
    if benchmark.is_file():
        found[BENCHMARK.as_posix()] = benchmark
    return found


def write_bundle(results_dir: str | Path) -> Path:
    """Write the bundle of ``results_dir`` atomically (:func:`sdfuse.data.storage.atomic_write`); returns its path."""
    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for name, path in members(results_dir).items():
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(path, "rb") as source, bundle.open(info, "w") as target:
                    shutil.copyfileobj(source, target)

    return atomic_write(bundle_path(results_dir), write, what="the results bundle",
                        fix="point results_dir to a writable disk with space")
