"""The results bundle (:mod:`sdfuse.book.bundle`): what ``results/<profile>.zip`` holds, written atomically."""
from __future__ import annotations

import gzip
import json
import zipfile

import pytest

from sdfuse.book.bundle import bundle_path, write_bundle
from sdfuse.errors import StorageError


@pytest.fixture
def results(tmp_path):
    """A results root with a smoke folder (tables, records, provenance, run record, and files that do
    not belong in the bundle) and a benchmark."""
    smoke = tmp_path / "results" / "smoke"
    smoke.mkdir(parents=True)
    (smoke / "table1.csv").write_text("setting,value\n2+5+8,61.0\n")
    (smoke / "table1.keypoints.csv.gz").write_bytes(gzip.compress(b"pair,kp\n0,1\n", mtime=0))
    (smoke / "table1.provenance.json").write_text('{"profile": "smoke"}')
    (smoke / "fig2.csv").write_text("quantity,value\nP,10.0\n")
    (smoke / "runs.json").write_text('{"schema": "sdfuse-runs/2", "notebooks": {}}')
    (smoke / ".runs.lock").write_text("")
    (smoke / ".tmp-1-abcdef12-x.part").write_text("half")
    (smoke / "notes.txt").write_text("not a result")
    (tmp_path / "results" / "benchmark").mkdir()
    (tmp_path / "results" / "benchmark" / "benchmark.json").write_text('{"summary": []}')
    return smoke


def test_the_bundle_holds_every_result_file_and_the_benchmark(results):
    path = write_bundle(results)
    assert path == results.parent / "smoke.zip" == bundle_path(results)
    with zipfile.ZipFile(path) as bundle:
        assert bundle.namelist() == ["smoke/fig2.csv", "smoke/runs.json", "smoke/table1.csv",
                                     "smoke/table1.keypoints.csv.gz", "smoke/table1.provenance.json",
                                     "benchmark/benchmark.json"]
        assert bundle.read("smoke/table1.csv") == (results / "table1.csv").read_bytes()
        assert gzip.decompress(bundle.read("smoke/table1.keypoints.csv.gz")) == b"pair,kp\n0,1\n"
        assert json.loads(bundle.read("benchmark/benchmark.json")) == {"summary": []}


def test_the_bundle_depends_only_on_the_files(results):
    first = write_bundle(results).read_bytes()
    (results / "table1.csv").touch()                               # a new time stamp, the same bytes
    assert write_bundle(results).read_bytes() == first
    (results / "table1.csv").write_text("setting,value\n2+5+8,62.0\n")
    assert write_bundle(results).read_bytes() != first


def test_without_a_benchmark_the_bundle_has_the_results_only(results):
    (results.parent / "benchmark" / "benchmark.json").unlink()
    with zipfile.ZipFile(write_bundle(results)) as bundle:
        assert not [name for name in bundle.namelist() if not name.startswith("smoke/")]


def test_a_failed_write_keeps_the_previous_bundle(results, monkeypatch):
    before = write_bundle(results).read_bytes()
    (results / "table2.csv").write_text("setting,value\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shutil.copyfileobj", full_disk)
    with pytest.raises(StorageError, match="the disk is full: could not write the results bundle"):
        write_bundle(results)
    assert bundle_path(results).read_bytes() == before
    assert sorted(p.name for p in results.parent.iterdir()) == ["benchmark", "smoke", "smoke.zip"]


def test_the_run_page_links_the_bundle_when_the_book_serves_it(results, tmp_path, monkeypatch):
    from sdfuse.book.run_page import bundle_link

    book = tmp_path                                                 # the results lie in the book's folder
    (book / "_toc.yml").write_text("root: book/intro\n")
    (book / "book" / "tables").mkdir(parents=True)
    monkeypatch.chdir(book / "book" / "tables")                     # where papermill runs the run page
    assert bundle_link(results) == "No results bundle: results/smoke.zip is written at the end of every " \
                                   "`sdfuse reproduce`."
    write_bundle(results)
    link = bundle_link(results)
    assert link.startswith("Results bundle: {download}`results/smoke.zip <../../results/smoke.zip>` (6 files, ")
    assert link.endswith("the run record, and the benchmark).")
    (book / "_toc.yml").unlink()                                    # no book above: nothing serves the zip
    assert "{download}" not in bundle_link(results) and "which does not serve it" in bundle_link(results)
