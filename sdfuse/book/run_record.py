"""The run record of a results folder (``runs.json``): how the last run of each notebook went.

One record per results folder, one entry per notebook. An entry is written when its notebook starts
(``running``, with the process id) and again when it ends (``ok``, ``failed`` or ``interrupted``);
the record is read, updated and written back atomically under a lock, so a later ``--only table2``
run keeps Table 1's entry and two runs never lose each other's. A run killed outright leaves its
notebook ``running`` with the id of a process that is gone, which :func:`state` reads as
``interrupted``. Anything but ``ok`` means the notebook's tables are not current: the status page
shows them failed until a later run of that notebook succeeds.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterator

from ..data.paths import display_path, display_text
from ..data.storage import atomic_write_text, process_alive, storage_error, this_process

log = logging.getLogger(__name__)

RECORD = "runs.json"
SCHEMA = "sdfuse-runs/2"
LOCK = ".runs.lock"
STATES = ("ok", "failed", "interrupted", "running")


def now_utc() -> str:
    """The current UTC time, to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read(results_dir: str | os.PathLike) -> dict:
    """The record of ``results_dir``: ``{"schema", "notebooks": {stem: entry}, ...the last run's
    provenance}``; empty notebooks when there is none. An unreadable record gives ``"problem"``, and
    every notebook it does not show counts as not current (:func:`state` of a missing entry is None)."""
    path = Path(results_dir) / RECORD
    if not path.is_file():
        return {"schema": SCHEMA, "notebooks": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        notebooks = record.get("notebooks", {})
        if isinstance(notebooks, list):                           # schema 1: the last run's notebooks only
            notebooks = {entry["notebook"]: entry for entry in notebooks}
        if not all(isinstance(e, dict) and e.get("status") in STATES for e in notebooks.values()):
            raise ValueError("an entry without a known status")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        return {"schema": SCHEMA, "notebooks": {},
                "problem": f"{display_path(path)} is unreadable ({display_text(str(error))}); run sdfuse reproduce "
                           "again to rewrite it"}
    return {**record, "schema": SCHEMA, "notebooks": notebooks}


@contextlib.contextmanager
def _locked(results_dir: Path) -> Iterator[None]:
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update(results_dir: str | os.PathLike, stem: str | None = None, provenance: dict | None = None,
           **entry) -> dict:
    """Merge ``entry`` into notebook ``stem``'s entry (and ``provenance`` into the record's top level),
    keeping every other notebook's; returns the new record."""
    results_dir = Path(results_dir)
    fix = "point results_dir to a writable disk with space"
    try:
        with _locked(results_dir):
            record = read(results_dir)
            record.pop("problem", None)
            if provenance is not None:
                record = {**{k: v for k, v in record.items() if k in ("schema", "notebooks")}, **provenance,
                          "notebooks": record["notebooks"]}
            if stem is not None:
                record["notebooks"][stem] = {**record["notebooks"].get(stem, {}), "notebook": stem, **entry}
            atomic_write_text(results_dir / RECORD, json.dumps(record, indent=1), what="the run record", fix=fix)
    except OSError as error:
        raise storage_error(error, results_dir / RECORD, "the run record", fix) from error
    return record


def started(results_dir: str | os.PathLike, stem: str, name: str, parameters: dict) -> None:
    """Record that notebook ``stem`` starts now in this process."""
    update(results_dir, stem, name=name, status="running", started_utc=now_utc(), finished_utc=None,
           wall_time_s=None, error=None, parameters=parameters, **this_process())


def state(entry: dict | None) -> str | None:
    """``ok``, ``failed``, ``interrupted`` or ``running`` for one notebook's entry (None: no entry).

    A ``running`` entry whose process is gone (on this host) is ``interrupted``.
    """
    if entry is None:
        return None
    if entry["status"] == "running" and not process_alive(entry.get("pid"), entry.get("host")):
        return "interrupted"
    return entry["status"]
