"""No stale or partial number is shown: the run record per notebook and results folder, the status and
landing-page glue that follow it, and pages written atomically.

Papermill is replaced by a fake that writes what a notebook would (its results CSVs, made here from
the paper's own numbers plus an offset per run, and an executed notebook), then succeeds, fails in
a cell, is interrupted or hits a full disk; the status is then read as the book reads it. The real
notebooks are run by ``tests/test_book.py`` (a failing Table 1 followed by a Table 2 run, built).
"""
from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from sdfuse.book import run_page, status_page
from sdfuse.book import run_record
from sdfuse.book.runner import reproduce
from sdfuse.book.status import status_table
from sdfuse.errors import StorageError
from sdfuse.tables import paper
from tests.test_reliability_reproduce import PAGES

ROOT = Path(__file__).resolve().parents[1]
FAILED = "failed in the last run (see its page)"
TABLE1, TABLE2 = "Table 1: UNet layers", "Table 2: reduction"
PAPER_TABLES = {"01_unet_layers": {"table1": paper.table1}, "02_reduction": {"table2": paper.table2}}


def _book(root: Path) -> Path:
    (root / "book").mkdir(parents=True)
    (root / "book" / "intro.md").write_text((ROOT / "book" / "intro.md").read_text())
    return root


class FakePapermill:
    """``papermill.execute_notebook`` that writes each notebook's results (the paper's values + ``offset``)
    and an executed notebook, and does what ``outcome[stem]`` says: ok, fail, interrupt or disk_full."""

    def __init__(self, monkeypatch):
        self.outcome: dict[str, str] = {}
        self.offset = 0.0
        monkeypatch.setattr(papermill, "execute_notebook", self)

    def __call__(self, source, output, parameters, **kwargs):
        stem = Path(source).stem
        results = Path(parameters["results_dir"])
        notebook = nbformat.read(source, as_version=4)
        notebook.cells.append(nbformat.v4.new_markdown_cell(f"executed with offset {self.offset}"))
        what = self.outcome.get(stem, "ok")
        if what == "disk_full":
            Path(output).write_text('{"cells": [')                # half a notebook, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        for name, table in PAPER_TABLES.get(stem, {}).items():
            rows = table().assign(value=lambda t: t["value"] + self.offset, aggregate="category_mean", category="all")
            rows.to_csv(results / f"{name}.csv", index=False)
        nbformat.write(notebook, output)
        if what == "fail":
            raise papermill.PapermillExecutionError(cell_index=2, exec_count=3, source="tables.table1(run)",
                                                    ename="DatasetError", evalue="SPair-71k not found", traceback=[])
        if what == "interrupt":
            raise KeyboardInterrupt
        return notebook


@pytest.fixture
def fake(monkeypatch):
    return FakePapermill(monkeypatch)


def _cells(root: Path, table: str) -> pd.DataFrame:
    status = status_table(root / "results")
    return status[status["table"] == table]


def _page(root: Path, stem: str) -> nbformat.NotebookNode:
    return nbformat.read(root / "book" / "tables" / f"{stem}.ipynb", as_version=4)


def _glued(notebook) -> dict[str, str]:
    return {o["metadata"]["scrapbook"]["name"]: next(iter(o["data"].values())) for cell in notebook.cells
            if cell.cell_type == "code" for o in cell.get("outputs", []) if "scrapbook" in o.get("metadata", {})}


def _quoted(stem: str) -> set[str]:
    """The glue keys the landing page takes from notebook ``stem``."""
    keys = set(re.findall(rf"tables/{stem}\.ipynb::(\w+)", (ROOT / "book" / "intro.md").read_text()))
    assert keys
    return keys


def test_a_failed_table_stays_failed_after_a_run_of_another_table_until_it_succeeds(fake, tmp_path):
    root = _book(tmp_path)
    fake.offset = 1.0
    reproduce("smoke", only=["table1", "table2"], root=root)
    assert (_cells(root, TABLE1)["reproduced"] - _cells(root, TABLE1)["paper"]).round(6).eq(1.0).all()

    fake.offset, fake.outcome = 2.0, {"01_unet_layers": "fail"}
    runs = reproduce("smoke", only=["table1"], root=root)       # Table 1 fails; its CSV of the first run stays
    assert runs[0].status == "failed" and "DatasetError: SPair-71k not found (in cell [3]" in runs[0].error
    fake.outcome = {}
    reproduce("smoke", only=["table2"], root=root)              # a later run of another table
    table1 = _cells(root, TABLE1)
    assert set(table1["verdict"]) == {FAILED} and table1["reproduced"].isna().all()
    assert (_cells(root, TABLE2)["reproduced"] - _cells(root, TABLE2)["paper"]).round(6).eq(2.0).all()
    record = json.loads((root / "results" / "smoke" / "runs.json").read_text())
    assert {stem: entry["status"] for stem, entry in record["notebooks"].items()} == {
        "01_unet_layers": "failed", "02_reduction": "ok", "00_status": "ok", "99_run": "ok"}

    fake.offset = 3.0
    reproduce("smoke", only=["table1"], root=root)              # a later run of Table 1 succeeds
    table1 = _cells(root, TABLE1)
    assert table1["verdict"].eq("smoke run: not comparable").all()
    assert (table1["reproduced"] - table1["paper"]).round(6).eq(3.0).all()


def test_each_results_folder_has_its_own_record(fake, tmp_path):
    root = _book(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "myrun"
    fake.outcome = {"01_unet_layers": "fail"}
    reproduce("smoke", only=["table1"], parameters={"results_dir": str(elsewhere)}, root=root)
    assert json.loads((elsewhere / "runs.json").read_text())["notebooks"]["01_unet_layers"]["status"] == "failed"
    assert not (root / "results").exists()                       # nothing recorded beside another folder's results
    fake.outcome = {}
    reproduce("smoke", only=["table1"], root=root)
    assert set(_cells(root, TABLE1)["profile"]) == {"smoke"}
    assert set(status_table(elsewhere.parent)["verdict"][lambda v: v.str.startswith("failed")]) == {FAILED}


def test_a_missing_csv_is_not_run_and_a_damaged_one_is_named(fake, tmp_path):
    root = _book(tmp_path)
    reproduce("smoke", only=["table1", "table2"], root=root)
    results = root / "results" / "smoke"
    (results / "table1.csv").unlink()
    (results / "table2.csv").write_bytes(b"\x00\xff garbage \n\x01")
    assert set(_cells(root, TABLE1)["verdict"]) == {"not run"} and _cells(root, TABLE1)["reproduced"].isna().all()
    table2 = _cells(root, TABLE2)
    assert table2["reproduced"].isna().all()
    assert table2["verdict"].str.startswith(f"not shown: {results / 'table2.csv'} is unreadable").all()
    frame = paper.table2().assign(aggregate="category_mean", category="all")
    frame.loc[0, "value"] = float("nan")                          # a cell without a value
    frame.to_csv(results / "table2.csv", index=False)
    table2 = _cells(root, TABLE2)
    assert table2["verdict"].iloc[0] == "not run: needs the ODISE checkpoint (non-commercial licence): " \
                                        "-p captioner_checkpoint=PATH" and pd.isna(table2["reproduced"].iloc[0])
    assert table2["reproduced"].iloc[1:].notna().all()


def test_an_unreadable_run_record_shows_no_number_of_its_folder(fake, tmp_path):
    root = _book(tmp_path)
    reproduce("smoke", only=["table1"], root=root)
    record = root / "results" / "smoke" / "runs.json"
    for damage in ("{not json", json.dumps({"notebooks": {"01_unet_layers": {"status": "maybe"}}})):
        record.write_text(damage)
        table1 = _cells(root, TABLE1)
        assert table1["reproduced"].isna().all()
        assert table1["verdict"].str.startswith(f"not shown: {record} is unreadable").all()


def test_a_killed_run_reads_as_interrupted_and_a_live_one_as_running(tmp_path):
    results = tmp_path / "results" / "smoke"
    results.mkdir(parents=True)
    paper.table1().assign(aggregate="category_mean", category="all").to_csv(results / "table1.csv", index=False)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_record.started(results, "01_unet_layers", "table1", {})   # this process: alive
    assert set(_cells(tmp_path, TABLE1)["verdict"]) == {"not complete: its notebook is running now"}
    run_record.update(results, "01_unet_layers", pid=int(gone.stdout))  # as if a killed process had written it
    table1 = _cells(tmp_path, TABLE1)
    assert set(table1["verdict"]) == {"failed in the last run: interrupted (see its page)"}
    assert table1["reproduced"].isna().all()


def test_an_interrupted_run_leaves_pages_that_say_so_and_the_landing_page_builds(fake, tmp_path):
    root = _book(tmp_path)
    reproduce("smoke", only=["table1"], root=root)
    assert "executed with offset" in _page(root, "01_unet_layers").cells[-1].source
    fake.outcome = {"01_unet_layers": "interrupt"}
    with pytest.raises(KeyboardInterrupt):
        reproduce("smoke", only=["table1"], root=root)
    page = _page(root, "01_unet_layers")
    assert page.cells[0].source == "# Supplementary Table 1: which UNet layers"
    assert "did not complete: it was interrupted (Ctrl-C)" in page.cells[1].source
    assert "sdfuse reproduce --profile smoke --only table1" in page.cells[1].source
    assert not any("executed with offset" in cell.source for cell in page.cells)   # nothing of the earlier run
    status = _page(root, "00_status")                                              # not rebuilt by this run
    assert "did not complete: the run that rebuilds it started at" in status.cells[1].source
    assert set(_glued(status)) == _quoted("00_status")             # every value the landing page quotes
    assert all("not available" in value for value in _glued(status).values())
    assert set(_cells(root, TABLE1)["verdict"]) == {"failed in the last run: interrupted (see its page)"}
    assert sorted(p.name for p in (root / "book" / "tables").iterdir()) == PAGES   # no temporary file left


def test_a_failing_cell_keeps_the_executed_notebook_with_the_values_it_could_not_glue(fake, tmp_path):
    root = _book(tmp_path)
    fake.outcome = {"00_status": "fail"}
    runs = reproduce("smoke", only=["table1"], root=root)
    assert [r.status for r in runs] == ["ok", "failed", "ok"]
    page = _page(root, "00_status")
    assert any("executed with offset" in cell.source for cell in page.cells)
    assert set(_glued(page)) == _quoted("00_status")
    assert all(value == repr("not available: 00_status failed in the last run") for value in _glued(page).values())


def test_a_full_disk_while_writing_a_page_leaves_a_valid_page_and_no_partial_file(fake, tmp_path, monkeypatch):
    root = _book(tmp_path)
    reproduce("smoke", only=["table1"], root=root)
    fake.outcome = {"01_unet_layers": "disk_full"}
    runs = reproduce("smoke", only=["table1"], root=root)
    assert runs[0].status == "failed" and runs[0].error.startswith("StorageError: the disk is full: could not write "
                                                                   "the executed notebook")
    page = _page(root, "01_unet_layers")
    assert "did not complete: it failed before its cells ran: StorageError" in page.cells[1].source
    assert sorted(p.name for p in (root / "book" / "tables").iterdir()) == PAGES
    assert set(_cells(root, TABLE1)["verdict"]) == {FAILED}

    def full(self, *args, **kwargs):                               # the disk is full for every write now
        raise OSError(errno.ENOSPC, "No space left on device")

    before = {p.name: p.read_bytes() for p in (root / "book" / "tables").iterdir()}
    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(nbformat, "write", lambda *a, **k: full(None))
    with pytest.raises(StorageError, match="the disk is full"):
        reproduce("smoke", only=["table1"], root=root)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (root / "book" / "tables").iterdir()} == before
    for page in before:
        nbformat.read(root / "book" / "tables" / page, as_version=4)   # every page is still a valid notebook


def test_the_landing_page_headline_follows_the_status(monkeypatch):
    glued = {}
    monkeypatch.setattr(status_page, "glue_text", lambda name, text: glued.__setitem__(name, text))
    monkeypatch.setattr(status_page, "glue_value", lambda name, value: None)
    cells = paper.table1().query("setting == '2+5+8' and alpha == 0.1")
    sd, fuse = (cells.loc[cells["method"] == m, "value"].item() for m in ("SD", "Fuse"))
    rows = pd.DataFrame([
        {"table": TABLE1, "cell": "2+5+8 · SD · PCK@0.10", "profile": "paper", "paper": sd, "reproduced": 50.04,
         "delta": 50.04 - sd, "verdict": "differs"},
        {"table": TABLE1, "cell": "2+5+8 · Fuse · PCK@0.10", "profile": "paper", "paper": fuse, "reproduced": None,
         "delta": None, "verdict": FAILED}])
    status_page.glue_status(rows, "paper")
    assert {k: v for k, v in glued.items() if not k.startswith("summary_")} == {
        "status_cells": "2", "headline_sd_pck10": "50.0", "headline_sd_pck10_paper": f"{sd:.1f}",
        "headline_fuse_pck10": f"not available: {FAILED}", "headline_fuse_pck10_paper": "62.2"}
    assert glued["summary_profile"] == "paper"
    assert [glued[f"summary_table1_{c}"] for c in ("cell", "paper", "reproduced", "verdict")] == [
        "2+5+8 · Fuse · PCK@0.10", "62.2", "–", FAILED]
    assert [glued[f"summary_table6_{c}"] for c in ("cell", "paper", "reproduced", "verdict")] == [
        "outcome 111", "39.28", "–", "not run: no paper results"]
    status_page.glue_status(rows, "smoke")
    assert glued["headline_sd_pck10"] == glued["headline_fuse_pck10"] == "not available: no smoke results"
    assert glued["summary_profile"] == "smoke" and glued["summary_table1_verdict"] == "not run: no smoke results"


def test_the_landing_summary_shows_each_headline_in_the_papers_precision_with_its_interval(monkeypatch):
    glued = {}
    monkeypatch.setattr(status_page, "glue_text", lambda name, text: glued.__setitem__(name, text))
    monkeypatch.setattr(status_page, "glue_value", lambda name, value: None)
    rows = pd.DataFrame([
        {"table": TABLE1, "cell": "2+5+8 · Fuse · PCK@0.10", "profile": "paper", "paper": 62.2, "reproduced": 61.96,
         "ci_low": 60.04, "ci_high": 63.96, "delta": -0.24, "verdict": "reproduced"},
        {"table": "Table 6: outcomes", "cell": "outcome 111", "profile": "paper", "paper": 39.28, "reproduced": 40.123,
         "ci_low": 39.001, "ci_high": 41.249, "delta": 0.843, "verdict": "reproduced"},
        {"table": "Table 7: relative distances", "cell": "Average · SD correct match", "profile": "paper",
         "paper": 0.218, "reproduced": 0.2, "ci_low": float("nan"), "ci_high": float("nan"), "delta": -0.018,
         "verdict": "not judged: no interval in the results (rerun the table)"}])
    status_page.glue_status(rows, "paper")
    assert glued["summary_table1_reproduced"] == "62.0 [60.0, 64.0]" and glued["summary_table1_verdict"] == "reproduced"
    assert glued["summary_table6_reproduced"] == "40.12 [39.00, 41.25]"
    assert glued["summary_table7_reproduced"] == "0.200" and glued["summary_table7_paper"] == "0.218"
    assert glued["summary_fig2_cell"] == "P(Fuse ✓ | SD ✓, DINO ✗)" and glued["summary_fig2_paper"] == "70.2"


def test_the_run_page_names_an_unreadable_run_record_and_benchmark(tmp_path, monkeypatch):
    import IPython.display

    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "runs.json").write_text('{"notebooks": [')
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "benchmark.json").write_text('{"summary": [')   # cut short
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    run_page.run_record_views(tmp_path)
    texts = [getattr(item, "data", "") for item in shown]
    assert any(f"Not shown**: {tmp_path / 'smoke' / 'runs.json'} is unreadable" in text for text in texts)
    assert texts[-1].startswith(f"## Benchmark\n\nNot shown: {tmp_path / 'benchmark' / 'benchmark.json'} is unreadable")
