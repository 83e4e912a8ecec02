"""Every notebook under papermill on the smoke profile, their results, and the strict jupyter-book build."""
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from sdfuse.profiles.parameters import NOTEBOOK_DIR, NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]


def _text(page: Path) -> str:
    """The visible text of a built HTML page, whitespace collapsed."""
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page.read_text())).split())


def _glue(notebook: Path) -> dict:
    """Glued values of an executed notebook (myst-nb stores them as display data with scrapbook metadata)."""
    values = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta:
                values[meta["name"]] = output["data"][meta["mime_prefix"] + "text/plain"]
    return values


@pytest.fixture(scope="module")
def book_root(built_book):
    return built_book


def test_templates_are_stripped_and_tagged():
    """Results first: every code cell is removed from the page (plumbing) or folded under a toggle
    labelled "How this page was computed: …" (parameters, setup, computation)."""
    from sdfuse.book.runner import COMPUTED

    for path in NOTEBOOK_DIR.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") for c in code), path
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, path
        for cell in code:
            tags = set(cell.metadata.get("tags", []))
            assert len(tags & {"hide-input", "remove-input"}) == 1 and "hide-output" not in tags, (path, cell.source)
            prompt = cell.metadata.get("mystnb", {}).get("code_prompt_show", "")
            assert prompt.startswith(f"{COMPUTED}: ") if "hide-input" in tags else not prompt, (path, cell.source)
        parameters = next(c for c in code if "parameters" in c.metadata["tags"])
        assert "hide-input" in parameters.metadata["tags"], path
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path


def test_the_landing_page_quotes_every_table_of_the_status():
    from sdfuse.book.status import TABLES

    page = (Path(__file__).resolve().parents[1] / "book" / "intro.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| [") and "::summary_" in line]
    assert len(rows) == len(TABLES)
    for spec, row in zip(TABLES, rows):
        assert f"](tables/{spec.notebook}.ipynb) |" in row, spec.key
        assert re.findall(r"::summary_(\w+?)_(cell|paper|reproduced|verdict):s", row) == [
            (spec.key, column) for column in ("cell", "paper", "reproduced", "verdict")]


def test_executed_pages_fold_papermills_cell_and_show_no_machine_path(book_root):
    """The injected cell is folded like the parameters cell, and it and papermill's metadata say where
    the results went relative to the book's folder."""
    from sdfuse.book.runner import INJECTED_PROMPT

    for stem in ("01_unet_layers", "00_status"):
        text = (book_root / "book" / "tables" / f"{stem}.ipynb").read_text()
        notebook = nbformat.reads(text, as_version=4)
        injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and "hide-input" in injected[0].metadata.tags, stem
        assert injected[0].metadata.mystnb.code_prompt_show == INJECTED_PROMPT
        assert 'results_dir = "results/smoke"' in injected[0].source.splitlines(), injected[0].source
        assert notebook.metadata.papermill.output_path == f"book/tables/{stem}.ipynb"
        assert notebook.metadata.papermill.input_path == f"notebooks/{stem}.ipynb"
        assert str(book_root) not in text and "/work/" not in text and str(ROOT) not in text, stem
    provenance = json.loads((book_root / "results" / "smoke" / "table1.provenance.json").read_text())
    assert provenance["data_root"] == "$SDFUSE_HOME/smoke/SPair-71k"
    assert provenance["sd_model"] == "$SDFUSE_HOME/smoke/models/sd"


def test_notebook_writes_the_14_row_table(book_root):
    table = pd.read_csv(book_root / "results" / "smoke" / "table1.csv")
    rows = table[(table["aggregate"] == "category_mean") & (table["category"] == "all")]
    assert len(rows.pivot_table(index=["setting", "method"], columns="alpha", values="value")) == 14
    provenance = json.loads((book_root / "results" / "smoke" / "table1.provenance.json").read_text())
    assert provenance["profile"] == "smoke" and provenance["grid"] == 12 and provenance["packages"]["torch"]
    runs = json.loads((book_root / "results" / "smoke" / "runs.json").read_text())
    table1 = runs["notebooks"]["01_unet_layers"]
    assert table1["status"] == "ok" and table1["wall_time_s"] > 0 and table1["finished_utc"] >= table1["started_utc"]
    glue = _glue(book_root / "book" / "tables" / "01_unet_layers.ipynb")
    fuse = rows.query("setting == '2+5+8' and method == 'Fuse' and alpha == 0.1")["value"].item()
    assert float(glue["table1_fuse_pck10"]) == pytest.approx(fuse)
    assert float(glue["table1_fuse_pck10_paper"]) == 62.2


def test_every_notebook_writes_its_results(book_root):
    results = book_root / "results" / "smoke"
    for name in ("table1", "table2", "table3", "alpha_sweep", "table5", "table6", "fig2", "table7", "table8"):
        frame = pd.read_csv(results / f"{name}.csv")
        assert len(frame) > 0 and frame["value"].notna().any(), name
    table6 = pd.read_csv(results / "table6.csv")
    assert table6.query("category == 'all'")["value"].sum() == pytest.approx(100)
    glue = _glue(book_root / "book" / "tables" / "04_alpha_sweep.ipynb")
    sweep = pd.read_csv(results / "alpha_sweep.csv")
    default = sweep.query("fusion_alpha == 0.5 and alpha == 0.1 and aggregate == 'category_mean' and category == 'all'")
    assert float(glue["alpha_sweep_default_pck10"]) == pytest.approx(default["value"].item())


def test_book_builds_strictly_with_the_smoke_banner(book_root):
    html = book_root / "_build" / "html"
    for stem in NOTEBOOKS.values():
        page = (html / "book" / "tables" / f"{stem}.html").read_text()
        assert "Smoke profile: these numbers are NOT the paper" in page, stem
        assert "<img" in page and "Provenance" in page, stem
    page = (html / "book" / "tables" / "01_unet_layers.html").read_text()
    assert "PCK@0.10" in page and "62.2" in page
    intro = (html / "book" / "intro.html").read_text()
    table = pd.read_csv(book_root / "results" / "smoke" / "table1.csv")
    fuse = table.query("setting == '2+5+8' and method == 'Fuse' and alpha == 0.1 and aggregate == 'category_mean' "
                       "and category == 'all'")["value"].item()
    assert "Headline of this build" in intro and f"Fuse {fuse:.1f} (paper 62.2)" in _text(html / "book" / "intro.html")
    reliability = _text(html / "book" / "reliability.html")
    from sdfuse.book.reliability import GUARANTEES, count_tests

    counts = count_tests()
    assert all(f"{counts[g.key][0]} test functions" in reliability for g in GUARANTEES)


def test_status_page_lists_every_cell(book_root):
    from sdfuse.book.status import status_table

    status = status_table(book_root / "results")
    assert set(status["profile"]) == {"smoke"}
    assert len(status) == 42 + 24 + 12 + 40 + 8 + 4 + 8 + 20
    assert (status.loc[status["cell"].str.startswith("projection"), "verdict"].str.startswith("not run: needs the ODISE")).all()
    assert (status.loc[status["cell"].str.startswith("ASIC"), "verdict"] == "not run: cited baseline (paper's number only)").all()
    assert status["reproduced"].notna().sum() == len(status) - 6 - 8
    page = (book_root / "_build" / "html" / "book" / "tables" / "00_status.html").read_text()
    assert "smoke run: not comparable" in page and "not run: needs the ODISE" in page
    run_page = (book_root / "_build" / "html" / "book" / "tables" / "99_run.html").read_text()
    assert "01_unet_layers" in run_page and "CreativeML OpenRAIL-M" in run_page


def test_a_failed_table_stays_failed_after_another_table_runs_and_the_book_builds(book_root, tmp_path):
    """Table 1 fails (its dataset folder is empty), then Table 2 runs: the status, the landing page and
    Table 1's page show no number of Table 1 until it runs again, and the book still builds strictly."""
    import shutil
    import subprocess
    import sys

    from sdfuse.book.runner import reproduce
    from sdfuse.book.status import status_table

    copy = tmp_path / "book"
    shutil.copytree(book_root, copy, ignore=shutil.ignore_patterns("_build"))
    (tmp_path / "empty").mkdir()
    runs = reproduce("smoke", only=["table1"], parameters={"data_root": str(tmp_path / "empty")}, root=copy)
    assert [(r.name, r.status) for r in runs] == [("table1", "failed"), ("status", "ok"), ("run", "ok")]
    assert "SPair-71k not found" in runs[0].error and "in cell [" in runs[0].error
    runs = reproduce("smoke", only=["table2"], root=copy)
    assert [(r.name, r.status) for r in runs] == [("table2", "ok"), ("status", "ok"), ("run", "ok")]
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(copy), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html = copy / "_build" / "html" / "book"
    assert "An Exception was encountered" in (html / "tables" / "01_unet_layers.html").read_text()
    assert "failed in the last run (see its page)" in (html / "tables" / "00_status.html").read_text()
    intro = _text(html / "intro.html")
    assert "SD not available: failed in the last run (see its page) (paper 53.4)" in intro
    assert "Table 1: UNet layers 2+5+8 · Fuse · PCK@0.10 62.2 – failed in the last run (see its page)" in intro
    failed = _text(html / "tables" / "01_unet_layers.html")
    assert str(copy) not in failed and str(ROOT) not in failed
    status = status_table(copy / "results")
    table1 = status[status["table"] == "Table 1: UNet layers"]
    assert set(table1["verdict"]) == {"failed in the last run (see its page)"} and table1["reproduced"].isna().all()
    assert (copy / "results" / "smoke" / "table1.csv").is_file()      # the earlier run's file, not shown
    assert status[status["table"] == "Table 8: CUB-200"]["reproduced"].notna().any()
    assert status[status["table"] == "Table 2: reduction"]["reproduced"].notna().any()


def test_run_page_reads_a_benchmark_result(tmp_path):
    from sdfuse.book.run_page import benchmark_table
    from sdfuse.book.status import profiles_present

    folder = tmp_path / "benchmark"
    folder.mkdir()
    summary = [{"id": "vae_decoder_passes", "metric": "VAE decoder passes", "value": 0, "unit": "passes",
                "target": "== 0", "met": True},
               {"id": "matching_per_pair_s", "metric": "Per-pair matching", "value": 0.43, "unit": "s",
                "target": "<= 0.25", "met": False}]
    (folder / "benchmark.json").write_text(json.dumps({"schema": "sdfuse-benchmark/1", "summary": summary}))
    table = benchmark_table(folder / "benchmark.json")
    assert table.loc["VAE decoder passes", "met"] == "met" and table.loc["Per-pair matching", "value"] == 0.43
    assert profiles_present(tmp_path) == []                     # a benchmark folder is not a profile


def test_the_reliability_page_quotes_every_guarantee_and_every_reliability_test_file_is_counted():
    import re

    from sdfuse.book.reliability import GUARANTEES, TESTS_DIR

    page = (Path(__file__).resolve().parents[1] / "book" / "reliability.md").read_text()
    quoted = re.findall(r"tables/99_run\.ipynb::reliability_(\w+):s", page)
    assert sorted(quoted) == sorted(g.key for g in GUARANTEES)
    claimed = {name for g in GUARANTEES for name in g.tests}
    assert {p.name for p in TESTS_DIR.glob("test_reliability_*.py")} <= claimed
    assert all((TESTS_DIR / name).is_file() for name in claimed)


def test_tests_are_counted_from_the_files(tmp_path, monkeypatch):
    import sdfuse.book.reliability as reliability
    from sdfuse.book.reliability import Guarantee, count_file, count_tests

    (tmp_path / "test_a.py").write_text(
        "import pytest\nfrom hypothesis import given, strategies as st\n\n"
        "def helper():\n    pass\n\n"
        "def test_one():\n    pass\n\n"
        "@pytest.mark.parametrize('x', [1, 2])\ndef test_two(x):\n    pass\n\n"
        "@given(st.integers())\ndef test_three(n):\n    pass\n\n"
        "class TestGroup:\n    def test_four(self):\n        pass\n")
    assert count_file(tmp_path / "test_a.py") == (4, 1)
    assert count_tests(tmp_path / "nowhere") is None
    monkeypatch.setattr(reliability, "GUARANTEES", (Guarantee("k", "K", ("test_a.py", "test_missing.py")),))
    assert count_tests(tmp_path) == {"k": (4, 1)}
