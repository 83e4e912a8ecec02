"""Runs the notebooks with papermill into the book's source tree and records how each went."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError
from .parameters import BY_NAME, check_values
from .provenance import collect
from .storage import atomic_write_text

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = {"table1": "01_unet_layers", "table2": "02_reduction", "table3": "03_fusion_strategy",
             "alpha_sweep": "04_alpha_sweep", "table5": "05_dino_variants", "outcomes": "06_outcomes",
             "table8": "08_cub200"}
"""Table notebooks: short name (for ``--only``) → file stem in ``notebooks/``."""
SUMMARY_NOTEBOOKS = {"status": "00_status", "run": "99_run"}
"""Pages that read the results of the table notebooks; they run after them, on every reproduce."""
OUTPUT_SUBDIR = Path("book") / "tables"
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
"""The kernel's own log (its start-up advisories) kept to errors; a failing cell is reported by papermill."""


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
    """Notebook stem → the parameters it will receive, every run parameter checked
    (:mod:`sdfuse.parameters`) and every other one declared by some selected notebook.

    Nothing runs and nothing is written; :func:`reproduce` runs exactly this plan (with the results
    folder added).
    """
    names = only or list(NOTEBOOKS)
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        raise ConfigError(f"unknown notebook(s) {unknown}; choose from {sorted(NOTEBOOKS)}")
    selected = [NOTEBOOKS[name] for name in names] + list(SUMMARY_NOTEBOOKS.values())
    declared = {stem: notebook_parameters(stem) for stem in selected}
    user = dict(parameters or {})
    if "profile" in user:
        raise ConfigError("give the profile as --profile, not as -p profile=...")
    stray = sorted(set(user) - set().union(*declared.values()))
    if stray:
        raise ConfigError(f"no selected notebook has parameter(s) {stray}; they take "
                          f"{sorted(set().union(*declared.values()))}")
    run_values = check_values({"profile": profile, **{k: v for k, v in user.items() if k in BY_NAME}})
    common = {k: list(v) if isinstance(v, tuple) else v for k, v in {**user, **run_values}.items()}  # papermill writes lists, not tuples
    return {stem: {k: v for k, v in common.items() if k in declared[stem]} for stem in selected}


def reproduce(profile: str = "smoke", only: list[str] | None = None, parameters: dict | None = None,
              root: str | Path = ".", kernel: str = "python3",
              on_done: Callable[[NotebookRun], None] | None = None) -> list[NotebookRun]:
    """Execute the selected table notebooks, then the status and run pages (:func:`plan`); a failure
    does not stop the others.

    Executed copies go to ``<root>/book/tables/``, results to ``<root>/results/<profile>/``, and the
    run record (status, wall time, provenance) to ``<root>/results/<profile>/runs.json``, rewritten
    after each notebook (atomically: a killed run leaves the previous record or the new one).
    ``on_done`` is called with each notebook's outcome as soon as it is known.
    """
    steps = plan(profile, only, parameters)
    stems = {stem: name for name, stem in (NOTEBOOKS | SUMMARY_NOTEBOOKS).items()}
    root = Path(root).resolve()
    out_dir = root / OUTPUT_SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir = root / "results" / profile
    results_dir.mkdir(parents=True, exist_ok=True)
    record = collect({"profile": profile, "parameters": {"profile": profile, **(parameters or {})}})
    runs = []
    for stem, params in steps.items():
        params = {**params, "results_dir": params.get("results_dir") or str(results_dir)}
        runs.append(_execute(stems[stem], stem, params, out_dir, kernel))
        if on_done is not None:
            on_done(runs[-1])
        record["notebooks"] = [asdict(r) for r in runs]
        atomic_write_text(results_dir / "runs.json", json.dumps(record, indent=1), what="the run record",
                          fix="run with --root on a writable disk with space")
    return runs


def _execute(name: str, stem: str, params: dict, out_dir: Path, kernel: str) -> NotebookRun:
    import papermill

    start = time.perf_counter()
    log.info("running %s", stem)
    try:
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), str(out_dir / f"{stem}.ipynb"),
                                   parameters=params, kernel_name=kernel, cwd=str(out_dir), progress_bar=False,
                                   extra_arguments=KERNEL_ARGUMENTS)
        return NotebookRun(name, stem, "ok", time.perf_counter() - start)
    except papermill.PapermillExecutionError as error:
        message = f"{error.ename}: {error.evalue} (in cell [{error.exec_count}] of {out_dir / f'{stem}.ipynb'})"
    except Exception as error:  # noqa: BLE001 - any notebook failure is recorded; the others still run
        message = f"{type(error).__name__}: {error}"
    log.info("%s failed: %s", stem, message)
    return NotebookRun(name, stem, "failed", time.perf_counter() - start, message[:2000])
