"""Runs the table notebooks with papermill into the book's source tree and records how each went."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError
from .provenance import collect

log = logging.getLogger(__name__)

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = {"table1": "01_unet_layers", "table2": "02_reduction", "table3": "03_fusion_strategy",
             "alpha_sweep": "04_alpha_sweep", "outcomes": "06_outcomes"}
"""Short name (for ``--only``) → notebook file stem in ``notebooks/``."""
OUTPUT_SUBDIR = Path("book") / "tables"


@dataclass
class NotebookRun:
    """How one notebook run went."""

    name: str
    notebook: str
    status: str
    wall_time_s: float
    error: str | None = None


def reproduce(profile: str = "smoke", only: list[str] | None = None, parameters: dict | None = None,
              root: str | Path = ".", kernel: str = "python3") -> list[NotebookRun]:
    """Execute the selected notebooks with papermill; a failure does not stop the others.

    Executed copies go to ``<root>/book/tables/``, results to ``<root>/results/<profile>/``,
    and the run record (status, wall time, provenance) to ``<root>/results/<profile>/runs.json``.
    """
    import papermill

    names = only or list(NOTEBOOKS)
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        raise ConfigError(f"unknown notebook(s) {unknown}; choose from {sorted(NOTEBOOKS)}")
    root = Path(root).resolve()
    out_dir = root / OUTPUT_SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir = root / "results" / profile
    params = {"profile": profile, "results_dir": str(results_dir), **(parameters or {})}
    for name in names:
        known = papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{NOTEBOOKS[name]}.ipynb"))
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"{NOTEBOOKS[name]} has no parameter(s) {unknown}; it takes {sorted(known)}")
    runs = []
    for name in names:
        stem = NOTEBOOKS[name]
        start = time.perf_counter()
        log.info("running %s (%s profile)", stem, profile)
        try:
            papermill.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), str(out_dir / f"{stem}.ipynb"),
                                       parameters=params, kernel_name=kernel, cwd=str(out_dir),
                                       progress_bar=False)
            runs.append(NotebookRun(name, stem, "ok", time.perf_counter() - start))
        except Exception as error:  # noqa: BLE001 - any notebook failure is recorded, the others still run
            runs.append(NotebookRun(name, stem, "failed", time.perf_counter() - start, f"{type(error).__name__}: {error}"))
            log.error("%s failed: %s", stem, error)
    results_dir.mkdir(parents=True, exist_ok=True)
    record = collect({"profile": profile, "parameters": params})
    record["notebooks"] = [asdict(r) for r in runs]
    (results_dir / "runs.json").write_text(json.dumps(record, indent=1))
    return runs
