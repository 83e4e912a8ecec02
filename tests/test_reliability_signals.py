"""Ctrl-C and SIGTERM on real ``sdfuse`` processes, and file permissions under set umasks.

``reproduce`` is stopped while its Table 1 notebook's kernel runs a cell: Ctrl-C as a terminal sends
it (SIGINT to the process group) and SIGTERM as ``kill`` sends it (to the process). Each must end
with one line on stderr, exit 130 or 143 (128 + the signal, as shells report it), leave no temporary
file, no kernel process and no partial page, keep the previous results, and record the notebook as
interrupted. ``extract`` is stopped the same way while it writes the feature cache.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tests.test_reliability_reproduce import PAGES, _book_sources, _children

SDFUSE = str(Path(sys.executable).parent / "sdfuse")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _from_a_terminal(command: list[str]) -> list[str]:
    """``command`` with SIGINT at its default disposition, as a terminal's foreground job has it. An ignored
    signal is inherited across exec, and a test run launched in the background (``make test &``, nohup, some CI
    runners) ignores SIGINT: the command would then rightly ignore Ctrl-C too, as POSIX asks of a background job."""
    restore = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", restore, *command]


def _wait_for(condition, proc, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the command ended before the signal could be sent"
        assert time.monotonic() < deadline, "timed out waiting for the command to get there"
        time.sleep(0.05)


def _table1_being_computed(tables: Path) -> bool:
    """Whether papermill's copy of the Table 1 notebook (the temporary one it writes as it goes) shows the
    cell that computes the table running. With an empty feature cache that cell extracts every image,
    so the kernel is still in it when the signal arrives (a warm cache ends it, and the whole run, in
    about a second: a signal could then find the command finished)."""
    for tmp in tables.glob(".tmp-*.part"):
        try:
            notebook = json.loads(tmp.read_text())
        except (OSError, ValueError):                              # not written yet, or mid-write
            continue
        if not notebook.get("metadata", {}).get("papermill", {}).get("input_path", "").endswith("01_unet_layers.ipynb"):
            continue                                               # another notebook's copy
        if any(cell.get("metadata", {}).get("papermill", {}).get("status") == "running"
               and "tables.table1(" in "".join(cell.get("source", "")) for cell in notebook.get("cells", [])):
            return True
    return False


@pytest.mark.parametrize("how, code", [("ctrl-c", 130), ("sigterm", 143)])
def test_reproduce_stops_quietly_on_ctrl_c_and_sigterm(how, code, smoke_root, tmp_path):
    root = _book_sources(tmp_path / "book")
    results = root / "results" / "smoke"
    results.mkdir(parents=True)
    earlier = pd.DataFrame({"setting": ["2+5+8"], "method": ["SD"], "alpha": [0.1], "value": [1.5]})
    earlier.to_csv(results / "table1.csv", index=False)
    before = (results / "table1.csv").read_bytes()

    proc = subprocess.Popen(_from_a_terminal([SDFUSE, "reproduce", "--only", "table1", "--root", str(root),
                                              "-p", f"cache_dir={tmp_path / 'empty-cache'}"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    tables = root / "book" / "tables"
    _wait_for(lambda: _table1_being_computed(tables), proc)
    kernels = _children(proc.pid)
    assert kernels, "no kernel process found"
    assert proc.poll() is None, "the command ended before the signal could be sent"
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)                         # what a terminal does on Ctrl-C
    else:
        proc.send_signal(signal.SIGTERM)                           # what kill does
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == code, err
    word = "interrupted" if how == "ctrl-c" else "terminated (SIGTERM)"
    assert err.startswith(f"{word}: ") and err.count("\n") == 1, err  # one line: no kernel or ZMQ traceback
    assert "Traceback" not in err and "ZMQ" not in err
    deadline = time.monotonic() + 30
    while any(_alive(k) for k in kernels) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(k) for k in kernels), "a kernel outlived the command"
    assert sorted(p.name for p in tables.iterdir()) == PAGES          # every page of the book, no temporary file
    assert not [p for p in results.iterdir() if p.name.startswith(".tmp-")]
    assert (results / "table1.csv").read_bytes() == before           # the previous complete results are kept
    page = nbformat.read(tables / "01_unet_layers.ipynb", as_version=4)
    reason = "interrupted (Ctrl-C)" if how == "ctrl-c" else "terminated (SIGTERM)"
    assert f"did not complete: it was {reason}" in page.cells[1].source
    entry = json.loads((results / "runs.json").read_text())["notebooks"]["01_unet_layers"]
    assert (entry["status"], entry["error"]) == ("interrupted", reason)
    from sdfuse.book.status import status_table

    status = status_table(root / "results")
    assert set(status.loc[status["table"] == "Table 1: UNet layers", "verdict"]) == {
        "failed in the last run: interrupted (see its page)"}


def test_extract_stops_on_sigterm_with_a_message_and_complete_entries(smoke_root, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen([SDFUSE, "extract", "-p", f"cache_dir={cache}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(lambda: len(list(cache.rglob("*.safetensors"))) >= 2, proc, timeout=300)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.rstrip().splitlines()[-1].startswith("terminated (SIGTERM): finished feature-cache entries")
    assert "Traceback" not in err
    assert not list(cache.rglob(".tmp-*"))
    from safetensors.torch import load_file

    for entry in cache.rglob("*.safetensors"):
        assert load_file(entry)                                    # every entry left is complete


def _umask_now() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_have_the_permissions_of_the_umask(umask, tmp_path):
    from sdfuse.data.storage import atomic_write, atomic_write_text

    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "a.json", "{}")
        other = atomic_write(tmp_path / "b.bin", lambda tmp: Path(tmp).write_bytes(b"x"))
        atomic_write_text(text, "{}")                              # replacing keeps the umask's mode too
        reference = tmp_path / "c.txt"
        reference.write_text("as open() creates it")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(reference.stat().st_mode) == expected
    assert stat.S_IMODE(text.stat().st_mode) == expected and stat.S_IMODE(other.stat().st_mode) == expected


def test_feature_cache_and_assets_of_a_process_follow_its_umask(smoke_root, tmp_path):
    """A cache filled by ``sdfuse extract`` under umask 002 is group-writable, as a shared cache needs."""
    cache = tmp_path / "cache"
    done = subprocess.run([SDFUSE, "extract", "-p", f"cache_dir={cache}", "-p", "pairs_per_category=1"],
                          capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(0o002))
    assert done.returncode == 0, done.stderr
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries
    assert {stat.S_IMODE(p.stat().st_mode) for p in entries} == {0o664}
    mask = _umask_now()                                            # the smoke assets were built by this session
    assert stat.S_IMODE(smoke_root.stat().st_mode) == 0o777 & ~mask
