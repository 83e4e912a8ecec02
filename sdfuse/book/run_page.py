"""The run page (notebook ``99_run``): how the last run of each profile went, its bundle, the benchmark,
the mutation-testing report, the reliability counts and the manifests.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .pages import glue_text


def run_record_views(results_root: Path) -> None:
    """Display, per profile, how the last run of each notebook went, the link to its results bundle
    (:mod:`sdfuse.book.bundle`) and the provenance of the latest run; then the benchmark and the
    mutation-testing report (``results/quality/mutation.json``, :mod:`sdfuse.book.quality`) when present.
    Every path and message is shown in its display form (:mod:`sdfuse.data.paths`)."""
    from IPython.display import Markdown, display

    from . import run_record
    from ..data.paths import display_path, display_text
    from .status import profiles_present

    for profile in profiles_present(results_root):
        if not (Path(results_root) / profile / run_record.RECORD).is_file():
            continue
        record = run_record.read(Path(results_root) / profile)
        display(Markdown(f"## Profile `{profile}`"))
        problem = record.pop("problem", None)
        if problem:
            display(Markdown(f"**Not shown**: {problem}"))
        entries = [{**entry, "status": run_record.state(entry)} for entry in record.pop("notebooks", {}).values()]
        notebooks = pd.DataFrame(entries, columns=["notebook", "status", "started_utc", "finished_utc", "wall_time_s",
                                                   "error"])
        notebooks["error"] = notebooks["error"].map(lambda text: display_text(text) if isinstance(text, str) else text)
        if not notebooks.empty:
            display(notebooks.set_index("notebook").style.format({"wall_time_s": "{:.1f}"}, na_rep="")
                    .map(lambda s: "" if s == "ok" else "color: #cf222e; font-weight: bold", subset=["status"]))
        display(Markdown(bundle_link(Path(results_root) / profile)))
        record.pop("schema", None)
        packages = record.pop("packages", {})
        manifests = record.pop("data_manifests_sha256", {})
        parameters = record.pop("parameters", {})
        rows = [(f"latest run: {k}", v) for k, v in record.items()]
        rows += [(f"parameter {k}", v) for k, v in parameters.items()]
        rows += [(f"version of {k}", v) for k, v in packages.items()]
        rows += [(f"sha256 of data_manifests/{k}", v[:16] + "…") for k, v in manifests.items()]
        rows = [(item, display_text(value) if isinstance(value, str) else value) for item, value in rows]
        display(pd.DataFrame(rows, columns=["item", "value"]).set_index("item"))
    benchmark = Path(results_root) / "benchmark" / "benchmark.json"
    if benchmark.is_file():
        try:
            record = json.loads(benchmark.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            display(Markdown(f"## Benchmark\n\nNot shown: {display_path(benchmark)} is unreadable "
                             f"({display_text(str(error))}); run `make bench` again."))
            return
        display(Markdown(f"## Benchmark\n\n`{record.get('command', 'make bench')}`, {record.get('generated_at', '')}, "
                         f"mode {record.get('mode', '?')}, on {record.get('machine', {}).get('cpu', '?')}."))
        display(benchmark_table(benchmark))
    mutation = Path(results_root) / "quality" / "mutation.json"
    if mutation.is_file():
        from .quality import mutation_views

        mutation_views(mutation)


def bundle_link(results_dir: Path) -> str:
    """MyST for the run page: a ``{download}`` link to the results bundle of ``results_dir``
    (:mod:`sdfuse.book.bundle`; the link is relative to the working folder, the page's own), or why there is
    none. The cell that displays it renders Markdown as MyST (``mystnb: {markdown_format: myst}``), so
    the book copies the zip into its HTML."""
    import os
    import zipfile

    from .bundle import BENCHMARK, bundle_path
    from ..data.paths import book_folder, display_path

    bundle = bundle_path(results_dir)
    if not bundle.is_file():
        return f"No results bundle: {display_path(bundle)} is written at the end of every `sdfuse reproduce`."
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
    what = (f"{len(names)} files, {bundle.stat().st_size / 1e6:.1f} MB: every table, the records it is computed from, "
            f"its provenance and the run record" + (", and the benchmark" if BENCHMARK.as_posix() in names else ""))
    book = book_folder()
    if book is None or not bundle.resolve().is_relative_to(book):
        return (f"Results bundle: {display_path(bundle)} ({what}); it lies outside the book's folder, which does not "
                "serve it.")
    target = Path(os.path.relpath(bundle.resolve(), Path.cwd().resolve())).as_posix()
    return f"Results bundle: {{download}}`{display_path(bundle)} <{target}>` ({what})."


def glue_reliability(tests_dir: Path | None = None) -> None:
    """Glue, per guarantee of the reliability page, how many tests check it (counted from the test files)."""
    from .reliability import GUARANTEES, TESTS_DIR, count_tests

    counts = count_tests(tests_dir or TESTS_DIR)
    for guarantee in GUARANTEES:
        if counts is None:
            text = "not counted: this installation has no tests/ folder"
        else:
            tests, properties = counts[guarantee.key]
            text = f"{tests} test functions" + (f", {properties} of them property-based" if properties else "")
        glue_text(f"reliability_{guarantee.key}", text)


def benchmark_table(path: Path) -> pd.DataFrame:
    """The headline rows of a ``make bench`` result (``results/benchmark/benchmark.json``)."""
    summary = json.loads(Path(path).read_text()).get("summary", [])
    table = pd.DataFrame(summary, columns=["metric", "value", "unit", "target", "met"])
    table["met"] = table["met"].map({True: "met", False: "missed"}).fillna("")
    return table.set_index("metric")


def manifest_view() -> pd.DataFrame:
    """Every manifest: kind, source, licence, citation."""
    from ..data.manifests import MANIFEST_DIR, load_manifest

    rows = []
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        manifest = load_manifest(path.stem)
        source = manifest.get("model_id") or ", ".join(manifest.get("urls", []) or []) or "see how_to_get"
        rows.append({"name": manifest.get("name", path.stem), "kind": manifest.get("kind"), "source": source,
                     "licence": manifest.get("licence"), "citation": manifest.get("citation")})
    return pd.DataFrame(rows).set_index("name")
