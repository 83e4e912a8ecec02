"""Runs the notebooks with papermill into the book's source tree and records how each went.

Every page is written atomically and is never stale: while a notebook runs, its page says so; it
is then replaced by the executed notebook (or, when a cell failed, by the notebook with its error
cell), and an interrupted notebook leaves a page saying it did not complete, never a partial one.
A notebook that has never run has a page saying so, with the command that runs it, so the book
builds whatever subset has run. How each notebook went is kept per results folder and per notebook
(:mod:`sdfuse.book.run_record`); the results folder is zipped beside it (:mod:`sdfuse.book.bundle`).

Executed notebooks are written for readers: papermill's injected cell is folded under the same
"How this page was computed" toggle as the parameters cell, and neither it, papermill's metadata
nor any error or stream output shows a machine's absolute path (:mod:`sdfuse.data.paths`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..data.paths import display_path, display_text, display_values
from ..data.storage import atomic_write, remove_stray_tmp, storage_error
from ..errors import ConfigError, Terminated
from ..profiles.parameters import (BY_NAME, NOTEBOOK_BY_NAME, NOTEBOOK_DIR, NOTEBOOK_PARAMETERS, NOTEBOOKS, PROFILES,
                                   ROOT_OPTION, check_together, check_values)
from . import run_record
from .bundle import write_bundle
from .provenance import collect

log = logging.getLogger(__name__)

SUMMARY_NOTEBOOKS = {"status": "00_status", "run": "99_run"}
"""Pages that read the results of the table notebooks; they run after them, on every reproduce."""
OUTPUT_SUBDIR = Path("book") / "tables"
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
"""The kernel's own log (its start-up advisories) kept to errors; a failing cell is reported by papermill."""
KERNEL_SOCKET_NAME = "kernel"
"""The Unix sockets of a POSIX kernel: ``kernel-1`` … ``-5`` in a private folder (:func:`kernel_connection`)."""
GLUE_REFERENCE = re.compile(r"tables/(\w+)\.ipynb::(\w+)")
"""A glued value of an executed notebook named in a page of the book (``{glue:text}`tables/STEM.ipynb::KEY```)."""
COMPUTED = "How this page was computed"
"""The label of every folded code cell of the book (``hide-input`` with ``mystnb.code_prompt_show``)."""
INJECTED_PROMPT = f"{COMPUTED}: the parameters of this run"
INJECTED_COMMENT = "Parameters of this run (paths relative to the book's folder, or under $SDFUSE_HOME)"


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
    (:mod:`sdfuse.profiles.parameters`: run parameters, the notebooks' own, and what they need of each other)
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
    (:mod:`sdfuse.book.run_record`). ``on_done`` is called with each notebook's outcome as soon as it is
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
    shown = {"profile": profile, **display_values(parameters or {}, root)}
    run_record.update(results_dir, provenance=collect({"profile": profile, "parameters": shown}))
    glued = _glue_references(root / "book")
    for stem, name in stems.items():                               # every page of the book exists from now on
        if stem not in steps and not (out_dir / f"{stem}.ipynb").is_file():
            _write_stub(out_dir / f"{stem}.ipynb", stem, name, profile, glued.get(stem, set()))
    steps = {stem: {**params, "results_dir": params.get("results_dir") or str(results_dir)}
             for stem, params in steps.items()}
    for stem in SUMMARY_NOTEBOOKS.values():                       # they read every table: stale from now on
        _begin(stems[stem], stem, steps[stem], out_dir / f"{stem}.ipynb", results_dir, profile, glued.get(stem, set()))
    runs = []
    for group in ([stem for stem in steps if stem not in SUMMARY_NOTEBOOKS.values()], SUMMARY_NOTEBOOKS.values()):
        for stem in group:
            runs.append(_execute(stems[stem], stem, steps[stem], out_dir, results_dir, kernel, profile,
                                 glued.get(stem, set())))
            if on_done is not None:
                on_done(runs[-1])
        write_bundle(results_dir)                  # after the tables (the run page links to it), then with its record
    return runs


def _book_of(page: Path) -> Path:
    """The book's folder (``--root``) of a page under :data:`OUTPUT_SUBDIR`."""
    return page.parents[len(OUTPUT_SUBDIR.parts)]


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
        _write_stub(page, stem, name, profile, glued, f"it was {message} at {run_record.now_utc()}")
        raise
    except Exception as error:  # noqa: BLE001 - any notebook failure is recorded; the others still run
        message = display_text(f"{type(error).__name__}: {error}", _book_of(page))
        _write_stub(page, stem, name, profile, glued, f"it failed before its cells ran: {message}")
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
    run_record.started(results_dir, stem, name, display_values(params, _book_of(page)))
    _write_stub(page, stem, name, profile, glued, f"the run that rebuilds it started at {run_record.now_utc()} and has "
                                                  "not finished: it is still running, or it was killed")


def _run_papermill(stem: str, params: dict, page: Path, kernel: str, glued: set[str]) -> str | None:
    """Execute notebook ``stem`` into ``page`` atomically; the error of a failing cell (the page then
    holds the notebook with its error cell), or None."""
    import papermill

    failure = []

    def execute(tmp: str) -> None:
        try:
            with warnings.catch_warnings(), kernel_connection() as config:
                # papermill warns that the temporary name does not end in .ipynb
                warnings.filterwarnings("ignore", message="The specified file .* does not end in one of")
                papermill.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), tmp, parameters=params,
                                           kernel_name=kernel, cwd=str(page.parent), progress_bar=False,
                                           extra_arguments=KERNEL_ARGUMENTS, shutdown_kernel="immediate",
                                           config=config)
        except papermill.PapermillExecutionError as error:
            failure.append(display_text(f"{error.ename}: {error.evalue} (in cell [{error.exec_count}] of {page})",
                                        _book_of(page)))
            _add_fallback_glue(tmp, glued, f"not available: {stem} failed in the last run")
        _for_readers(tmp, page, params)

    atomic_write(page, execute, what="the executed notebook", fix="run with --root on a writable disk with space")
    return failure[0] if failure else None


SOCKET_PATH_LIMIT = 107
"""The longest path of a Unix socket, in bytes (``sun_path`` holds 108 with the terminating NUL)."""


@contextlib.contextmanager
def kernel_connection() -> Iterator:
    """The kernel manager's configuration, for the length of one notebook's run: on POSIX, the kernel's
    five channels are Unix sockets ``kernel-1`` … ``-5`` in a folder of the system's temporary folder,
    private to this run (mode 0700) and removed afterwards.

    Over TCP, jupyter_client picks free ports by binding and releasing them before the kernel binds them
    again, so another process (a second ``sdfuse reproduce``, a parallel test) can take one in between:
    the kernel then prints a ZMQ "Address already in use" traceback, or dies. A private folder cannot
    collide. Windows has no Unix sockets, and a temporary folder whose path leaves no room for a socket's
    name cannot hold them: both use TCP."""
    from traitlets.config import Config

    longest = os.path.join(tempfile.gettempdir(), "sdfuse-kernel-" + "x" * 8,  # mkdtemp adds 8 random characters
                           f"{KERNEL_SOCKET_NAME}-5")                      # the fifth socket of a fresh folder
    if os.name != "posix" or len(os.fsencode(longest)) > SOCKET_PATH_LIMIT:
        yield Config()
        return
    with tempfile.TemporaryDirectory(prefix="sdfuse-kernel-") as folder:
        yield Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, KERNEL_SOCKET_NAME)}})


def _for_readers(path: str | Path, page: Path, params: dict) -> None:
    """Rewrite the executed notebook at ``path`` (to become ``page``) for the book (module docstring):
    the injected cell folded and written with display paths, papermill's record of the paths and
    parameters too, and every error and stream output passed through :func:`sdfuse.data.paths.display_text`."""
    import nbformat
    from papermill.translators import translate_parameters

    root = _book_of(page)
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.setdefault("papermill", {}).update(
        input_path=display_path(NOTEBOOK_DIR / f"{page.stem}.ipynb", root), output_path=display_path(page, root),
        parameters=display_values(params, root))
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.source = translate_parameters(notebook.metadata.kernelspec.name, "python",
                                               display_values(params, root), INJECTED_COMMENT)
            cell.metadata["tags"] = [*tags, "hide-input"]
            cell.metadata.setdefault("mystnb", {})["code_prompt_show"] = INJECTED_PROMPT
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = display_text(output["text"], root)
            elif output.get("output_type") == "error":
                output["evalue"] = display_text(output["evalue"], root)
                output["traceback"] = [display_text(line, root) for line in output["traceback"]]
    nbformat.write(notebook, path)


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


def _write_stub(page: Path, stem: str, name: str, profile: str, glued: set[str], why: str | None = None) -> None:
    """Replace ``page`` atomically by its notebook's title and a note that it has not run yet (``why``
    None) or a warning that it did not complete, and why; either with the command that fills it."""
    import nbformat

    template = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    title = next((line for cell in template.cells if cell.cell_type == "markdown"
                  for line in cell.source.splitlines() if line.startswith("# ")), f"# {stem}")
    again = f"sdfuse reproduce --profile {profile}" + (f" --only {name}" if name in NOTEBOOKS else "")
    if why is None:
        note = (f"```{{note}}\nNot run yet: this page's notebook has not been run in this book. To fill this page, "
                f"run `{again}`.\n```")
    else:
        note = (f"```{{warning}}\nThis page's notebook did not complete: {why}. No number of an earlier run is "
                f"shown here, and the reproduction status marks its tables as not current. To fill this page, run "
                f"`{again}`.\n```")
    notebook = nbformat.v4.new_notebook(metadata=template.metadata)
    notebook.cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_markdown_cell(note)]

    def write(tmp: str) -> None:
        nbformat.write(notebook, tmp)
        _add_fallback_glue(tmp, glued, f"not available: {stem} has not run" if why is None
                           else f"not available: {stem} did not complete")

    atomic_write(page, write, what="the page of a notebook that has not completed",
                 fix="run with --root on a writable disk with space")
