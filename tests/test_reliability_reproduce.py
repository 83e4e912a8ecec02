"""Reliability of ``sdfuse reproduce``: a killed run never leaves a truncated results CSV, a rerun is
byte-identical to an uninterrupted run, and a failing notebook is named with its cell."""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from sdfuse.errors import StorageError

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["00_status.ipynb", "01_unet_layers.ipynb", "02_reduction.ipynb", "03_fusion_strategy.ipynb",
         "04_alpha_sweep.ipynb", "05_dino_variants.ipynb", "06_outcomes.ipynb", "08_cub200.ipynb",
         "10_match_your_images.ipynb", "99_run.ipynb"]
"""Every page of the book's tables folder: the notebooks not run have a page saying so."""
SDFUSE = str(Path(sys.executable).parent / "sdfuse")


def _book_sources(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("tables"))
    return root


def _saving_cell_running(tables: Path) -> bool:
    """Whether papermill has marked the cell that computes and saves the table as running (in the
    temporary copy it writes as it goes; the page itself is replaced only when the notebook ends)."""
    for executed in tables.glob(".tmp-*.part"):
        try:
            cells = json.loads(executed.read_text())["cells"]
        except (OSError, ValueError, KeyError):                    # not written yet, or mid-write
            continue
        if any(cell.get("metadata", {}).get("papermill", {}).get("status") == "running"
               and "save_results" in "".join(cell.get("source", "")) for cell in cells):
            return True
    return False


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _wait_gone(pids: list[int], timeout: float = 20) -> None:
    """Wait until the processes ``pids`` (started by our own subprocess) have exited; kill any that lingers."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                    break
            except OSError:
                break
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists() and time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)


def test_killed_reproduce_leaves_whole_csvs_and_a_rerun_is_byte_identical(built_book, tmp_path):
    uninterrupted = (built_book / "results" / "smoke" / "table1.csv").read_bytes()
    root = _book_sources(tmp_path / "book")
    results = root / "results" / "smoke"
    results.mkdir(parents=True)
    previous = pd.read_csv(io.BytesIO(uninterrupted)).assign(value=lambda t: t["value"].round(1))
    previous.to_csv(results / "table1.csv", index=False)        # a complete CSV from an earlier run
    earlier = (results / "table1.csv").read_bytes()
    assert earlier != uninterrupted

    proc = subprocess.Popen([SDFUSE, "reproduce", "--only", "table1", "--root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tables = root / "book" / "tables"
    deadline = time.monotonic() + 180
    while not _saving_cell_running(tables) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "reproduce ended before the kill point"
    time.sleep(0.1)                                                # mid-way through tables.table1(run)
    kernels = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _wait_gone(kernels)                                            # the kernel exits when its parent dies
    assert proc.returncode == -signal.SIGKILL

    after_kill = (results / "table1.csv").read_bytes()
    assert after_kill in (earlier, uninterrupted)                  # the previous complete file, or the new one
    assert [p.name for p in results.glob("*.csv")] == ["table1.csv"]  # a stray temporary file is never a .csv
    page = nbformat.read(tables / "01_unet_layers.ipynb", as_version=4)  # valid, and says it is not complete
    assert "did not complete: the run that rebuilds it started at" in page.cells[1].source
    from sdfuse.book.status import status_table

    status = status_table(root / "results")
    assert set(status.loc[status["table"] == "Table 1: UNet layers", "verdict"]) == {
        "failed in the last run: interrupted (see its page)"}      # the killed run's pid is gone

    rerun = subprocess.run([SDFUSE, "reproduce", "--only", "table1", "--root", str(root)],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert (results / "table1.csv").read_bytes() == uninterrupted  # byte-identical to the uninterrupted run
    assert sorted(p.name for p in results.iterdir() if p.name.startswith(".tmp-")) == []
    assert sorted(p.name for p in tables.iterdir()) == PAGES          # every page of the book, no temporary file
    assert "did not complete" not in nbformat.read(tables / "01_unet_layers.ipynb", as_version=4).cells[1].source


@pytest.fixture
def small_run(tmp_path):
    from sdfuse.profiles.runs import resolve

    return resolve("smoke", results_dir=tmp_path / "results", cache_dir=tmp_path / "cache")


def test_save_results_interrupted_keeps_the_previous_csv_or_none(small_run, monkeypatch):
    from sdfuse.book import pages

    table = pd.DataFrame({"setting": ["a", "b"], "value": [1.25, 2.5]})
    path = small_run.results_dir / "t.csv"

    def half_then_interrupt(self, target, **kwargs):
        Path(target).write_text("setting,val")                    # half a file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        pages.save_results(table, small_run, "t")
    assert not path.exists()                                       # no previous run: absent
    assert [p.name for p in small_run.results_dir.iterdir()] == []
    monkeypatch.undo()

    pages.save_results(table, small_run, "t")
    assert path.read_bytes() == b"setting,value\na,1.25\nb,2.5\n"
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        pages.save_results(table.assign(value=[9.0, 9.0]), small_run, "t")
    assert path.read_bytes() == b"setting,value\na,1.25\nb,2.5\n"   # previous complete file kept
    assert sorted(p.name for p in small_run.results_dir.iterdir()) == ["t.csv", "t.provenance.json"]


def test_save_results_on_a_full_disk_says_so_and_keeps_the_previous_csv(small_run, monkeypatch):
    from sdfuse.book import pages

    table = pd.DataFrame({"setting": ["a"], "value": [1.0]})
    path = pages.save_results(table, small_run, "t")
    before = path.read_bytes()

    def disk_full(self, target, **kwargs):
        Path(target).write_text("setting,va")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(StorageError, match=f"the disk is full: could not write the results table {path}"):
        pages.save_results(table.assign(value=[2.0]), small_run, "t")
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_run.results_dir.iterdir()) == ["t.csv", "t.provenance.json"]


def test_cli_names_a_failed_notebook_and_its_error_cell(monkeypatch, tmp_path, capsys):
    """The CLI exits non-zero, names the notebook, the error and the cell (runner → papermill failure)."""
    import papermill

    from sdfuse.cli import main

    def fail_table1(source, output, **kwargs):
        Path(output).write_text(Path(source).read_text())          # papermill writes the notebook, then raises
        if "01_unet_layers" in source:
            raise papermill.PapermillExecutionError(cell_index=3, exec_count=4, source="tables.table1(run)",
                                                    ename="DatasetError", evalue="SPair-71k not found at /x",
                                                    traceback=[])

    monkeypatch.setattr(papermill, "execute_notebook", fail_table1)
    _book_sources(tmp_path)
    assert main(["reproduce", "--only", "table1", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    line = next(row for row in captured.out.splitlines() if "01_unet_layers" in row)
    assert line.startswith("failed  01_unet_layers")
    assert "DatasetError: SPair-71k not found at /x (in cell [4] of" in line and "01_unet_layers.ipynb)" in line
    assert "failed: 01_unet_layers" in captured.err
    assert "ok      00_status" in captured.out and "ok      99_run" in captured.out
