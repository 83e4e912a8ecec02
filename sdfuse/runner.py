"""Runs the notebooks with papermill into the book's source tree and records how each went.

Every page is written atomically and is never stale: while a notebook runs, its page says so; it
is then replaced by the executed notebook (or, when a cell failed, by the notebook with its error
cell), and an interrupted notebook leaves a page saying it did not complete, never a partial one.
How each notebook went is kept per results folder and per notebook (:mod:`sdfuse.run_record`).
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import run_record
from .errors import ConfigError, Terminated
from .parameters import (BY_NAME, NOTEBOOK_BY_NAME, NOTEBOOK_PARAMETERS, PROFILES, ROOT_OPTION, check_together,
                         check_values)
from .provenance import collect
from .storage import atomic_write, remove_stray_tmp, storage_error

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = {"table1": "01_unet_layers", "table2": "02_reduction", "table3": "03_fusion_strategy",
             "alpha_sweep": "04_alpha_sweep", "table5": "05_dino_variants", "outcomes": "06_outcomes",
             "table8": "08_cub200", "match": "10_match_your_images"}
"""Table notebooks and the "Match your own images" page: short name (for ``--only``) → file stem in ``notebooks/``."""
SUMMARY_NOTEBOOKS = {"status": "00_status", "run": "99_run"}
"""Pages that read the results of the table notebooks; they run after them, on every reproduce."""
OUTPUT_SUBDIR = Path("book") / "tables"
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
"""The kernel's own log (its start-up advisories) kept to errors; a failing cell is reported by papermill."""
GLUE_REFERENCE = re.compile(r"tables/(\w+)\.ipynb::(\w+)")
"""A glued value of an executed notebook named in a page of the book (``{glue:text}`tables/STEM.ipynb::KEY```)."""


@dataclass
class NotebookRun:
    """How one notebook run went."""

    name: str
    notebook: str
    status: str
    wall_time_s: float
    error: str | None = None


def notebook_parameters(stem: str) -> set[str]:
    """The parameter names a notebook declares in its ``parameters`` cell."""
    import papermill

    return set(papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb")))


def plan(profile: str = "smoke", only: list[str] | None = None,
         parameters: dict | None = None) -> dict[str, dict]:
    """Notebook stem → the parameters it will receive, every one checked against its schema
    (:mod:`sdfuse.parameters`: run parameters, the notebooks' own, and what they need of each other)
    and declared by some selected notebook.

    Nothing runs and nothing is written; :func:`reproduce` runs exactly this plan (with the results
    folder added).
    """
    names = list(NOTEBOOKS) if only is None else only
    if not names or any(not name for name in names):
        raise ConfigError(f"--only lists an empty name ({','.join(names)!r}); choose from {sorted(NOTEBOOKS)}")
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        raise ConfigError(f"unknown notebook(s) {unknown}; choose from {sorted(NOTEBOOKS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--only names a notebook twice: {names}")
    selected = [NOTEBOOKS[name] for name in names] + list(SUMMARY_NOTEBOOKS.values())
    declared = {stem: notebook_parameters(stem) for stem in selected}
    user = dict(parameters or {})
    if "profile" in user:
        raise ConfigError("give the profile as the profile argument (--profile), not as a parameter")
    stray = sorted(set(user) - set().union(*declared.values()))
    if stray:
        raise ConfigError(f"no selected notebook has parameter(s) {stray}; they take "
                          f"{sorted(set().union(*declared.values()))}")
    run_values = check_values({"profile": profile, **{k: v for k, v in user.items() if k in BY_NAME}})
    own = check_values({k: v for k, v in user.items() if k not in BY_NAME}, NOTEBOOK_BY_NAME, "notebook parameter")
    grid = run_values.get("grid") or PROFILES[profile]["grid"]
    for stem in selected:
        if stem in NOTEBOOKS.values():
            defaults = {p.name: p.default for p in NOTEBOOK_PARAMETERS.get(stem, ())}
            check_together({**run_values, **defaults, **{k: v for k, v in own.items() if k in defaults}}, grid)
    common = {k: list(v) if isinstance(v, tuple) else v                  # papermill writes lists, not tuples
              for k, v in {**run_values, **own}.items()}
    return {stem: {k: v for k, v in common.items() if k in declared[stem]} for stem in selected}


def book_root(root: str | Path) -> Path:
    """``--root`` checked: a folder (created if missing), never a file or under one."""
    return Path(ROOT_OPTION.check(str(root))).resolve()


def reproduce(profile: str = "smoke", only: list[str] | None = None, parameters: dict | None = None,
              root: str | Path = ".", kernel: str = "python3",
              on_done: Callable[[NotebookRun], None] | None = None) -> list[NotebookRun]:
    """Execute the selected table notebooks, then the status and run pages (:func:`plan`); a failure
    does not stop the others.

    Executed copies go to ``<root>/book/tables/``, results to ``<root>/results/<profile>/`` (or the
    ``results_dir`` parameter), and how each notebook went to ``runs.json`` there
    (:mod:`sdfuse.run_record`). ``on_done`` is called with each notebook's outcome as soon as it is
    known. Ctrl-C or SIGTERM (:class:`~sdfuse.errors.Terminated`) stops the run: the notebook that was
    running is recorded as interrupted, its page says so, and the interrupt is raised again.
    """
    steps = plan(profile, only, parameters)
    stems = {stem: name for name, stem in (NOTEBOOKS | SUMMARY_NOTEBOOKS).items()}
    root = book_root(root)
    out_dir = root / OUTPUT_SUBDIR
    results_dir = Path(next((p["results_dir"] for p in steps.values() if p.get("results_dir")),
                            root / "results" / profile))
    for folder in (out_dir, results_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise storage_error(error, folder, "the folder", "choose another --root") from error
    remove_stray_tmp(out_dir, depth=0)                            # left by a killed earlier run
    run_record.update(results_dir, provenance=collect({"profile": profile,
                                                       "parameters": {"profile": profile, **(parameters or {})}}))
    glued = _glue_references(root / "book")
    steps = {stem: {**params, "results_dir": params.get("results_dir") or str(results_dir)}
             for stem, params in steps.items()}
    for stem in SUMMARY_NOTEBOOKS.values():                       # they read every table: stale from now on
        _begin(stems[stem], stem, steps[stem], out_dir / f"{stem}.ipynb", results_dir, profile, glued.get(stem, set()))
    runs = []
    for stem, params in steps.items():
        runs.append(_execute(stems[stem], stem, params, out_dir, results_dir, kernel, profile, glued.get(stem, set())))
        if on_done is not None:
            on_done(runs[-1])
    return runs


def _glue_references(book: Path) -> dict[str, set[str]]:
    """Notebook stem → the glue keys the book's Markdown pages take from it."""
    found: dict[str, set[str]] = {}
    for page in sorted(book.rglob("*.md")) if book.is_dir() else []:
        for stem, key in GLUE_REFERENCE.findall(page.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(stem, set()).add(key)
    return found


def _execute(name: str, stem: str, params: dict, out_dir: Path, results_dir: Path, kernel: str, profile: str,
             glued: set[str]) -> NotebookRun:
    page = out_dir / f"{stem}.ipynb"
    start = time.perf_counter()
    log.info("running %s", stem)
    _begin(name, stem, params, page, results_dir, profile, glued)
    status, message = "failed", None
    try:
        message = _run_papermill(stem, params, page, kernel, glued)
        status = "ok" if message is None else "failed"
    except KeyboardInterrupt as interrupt:
        status = "interrupted"
        message = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted (Ctrl-C)"
        _write_stub(page, stem, f"it was {message} at {run_record.now_utc()}", name, profile, glued)
        raise
    except Exception as error:  # noqa: BLE001 - any notebook failure is recorded; the others still run
        message = f"{type(error).__name__}: {error}"
        _write_stub(page, stem, f"it failed before its cells ran: {message}", name, profile, glued)
    finally:
        wall = time.perf_counter() - start
        message = None if message is None else message[:2000]
        run_record.update(results_dir, stem, status=status, finished_utc=run_record.now_utc(), wall_time_s=wall,
                          error=message)
    if message is not None:
        log.info("%s failed: %s", stem, message)
    return NotebookRun(name, stem, status, wall, message)


def _begin(name: str, stem: str, params: dict, page: Path, results_dir: Path, profile: str, glued: set[str]) -> None:
    """Record notebook ``stem`` as running and replace its page by a note saying it has not finished."""
    run_record.started(results_dir, stem, name, params)
    _write_stub(page, stem, f"the run that rebuilds it started at {run_record.now_utc()} and has not finished: "
                            "it is still running, or it was killed", name, profile, glued)


def _run_papermill(stem: str, params: dict, page: Path, kernel: str, glued: set[str]) -> str | None:
    """Execute notebook ``stem`` into ``page`` atomically; the error of a failing cell (the page then
    holds the notebook with its error cell), or None."""
    import papermill

    failure = []

    def execute(tmp: str) -> None:
        try:
            with warnings.catch_warnings():                        # the temporary name does not end in .ipynb
                warnings.filterwarnings("ignore", message="The specified file .* does not end in one of")
                papermill.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), tmp, parameters=params,
                                           kernel_name=kernel, cwd=str(page.parent), progress_bar=False,
                                           extra_arguments=KERNEL_ARGUMENTS, shutdown_kernel="immediate")
        except papermill.PapermillExecutionError as error:
            failure.append(f"{error.ename}: {error.evalue} (in cell [{error.exec_count}] of {page})")
            _add_fallback_glue(tmp, glued, f"not available: {stem} failed in the last run")

    atomic_write(page, execute, what="the executed notebook", fix="run with --root on a writable disk with space")
    return failure[0] if failure else None


def _glue_output(key: str, text: str) -> dict:
    """A glued string as myst-nb stores it (``myst_nb.glue(key, text, display=False)``)."""
    prefix = "application/papermill.record/"
    return {"output_type": "display_data", "metadata": {"scrapbook": {"name": key, "mime_prefix": prefix}},
            "data": {prefix + "text/plain": repr(text)}}


def _add_fallback_glue(path: str | Path, keys: set[str], text: str) -> None:
    """Glue ``text`` for each of ``keys`` the notebook at ``path`` did not glue, so pages quoting it
    say the value is not available instead of failing the build."""
    import nbformat

    if not keys:
        return
    notebook = nbformat.read(path, as_version=4)
    present = {output.get("metadata", {}).get("scrapbook", {}).get("name") for cell in notebook.cells
               if cell.cell_type == "code" for output in cell.get("outputs", [])}
    missing = sorted(keys - present)
    if missing:
        cell = nbformat.v4.new_code_cell("", metadata={"tags": ["remove-input"]})
        cell.outputs = [nbformat.from_dict(_glue_output(key, text)) for key in missing]
        notebook.cells.append(cell)
        nbformat.write(notebook, path)


def _write_stub(page: Path, stem: str, why: str, name: str, profile: str, glued: set[str]) -> None:
    """Replace ``page`` atomically by its notebook's title and a warning that it did not complete."""
    import nbformat

    template = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    title = next((line for cell in template.cells if cell.cell_type == "markdown"
                  for line in cell.source.splitlines() if line.startswith("# ")), f"# {stem}")
    again = f"sdfuse reproduce --profile {profile}" + (f" --only {name}" if name in NOTEBOOKS else "")
    notebook = nbformat.v4.new_notebook(metadata=template.metadata)
    notebook.cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_markdown_cell(
        f"```{{warning}}\nThis page's notebook did not complete: {why}. No number of an earlier run is shown "
        f"here, and the reproduction status marks its tables as not current. To fill this page, run "
        f"`{again}`.\n```")]

    def write(tmp: str) -> None:
        nbformat.write(notebook, tmp)
        _add_fallback_glue(tmp, glued, f"not available: {stem} did not complete")

    atomic_write(page, write, what="the page of a notebook that did not complete",
                 fix="run with --root on a writable disk with space")
