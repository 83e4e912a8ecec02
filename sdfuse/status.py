"""The reproduction status: every cell of every supplementary table, paper vs each profile's results.

It reads ``results/<profile>/*.csv`` and ``results/<profile>/runs.json`` for every profile folder
present, so a paper-profile run made elsewhere and copied into ``results/paper/`` shows up without
code changes. A table whose notebook failed in the last run is marked failed, never shown stale.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from . import paper


@dataclass(frozen=True)
class TableSpec:
    """How one supplementary table's cells are read from the paper and from a results folder."""

    key: str
    title: str
    notebook: str
    results: str
    paper_cells: Callable[[], pd.DataFrame]
    result_cells: Callable[[pd.DataFrame], pd.DataFrame]
    tolerance: float
    not_run: dict[str, str] = field(default_factory=dict)


def _pck_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells 'setting · method · PCK@α' of a long PCK table (paper or results, category mean)."""
    if "aggregate" in frame:
        frame = frame[(frame["aggregate"] == "category_mean") & (frame["category"] == "all")]
    cell = frame["setting"].astype(str) + " · " + frame["method"] + " · PCK@" + frame["alpha"].map("{:.2f}".format)
    return pd.DataFrame({"cell": cell, "value": frame["value"]})


def _table6_paper() -> pd.DataFrame:
    return pd.DataFrame({"cell": [f"outcome {k}" for k in paper.TABLE6_RATIOS], "value": list(paper.TABLE6_RATIOS.values())})


def _table6_results(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["category"] == "all"]
    return pd.DataFrame({"cell": "outcome " + rows["outcome"].astype(str).str.zfill(3), "value": rows["value"]})


def _fig2_paper() -> pd.DataFrame:
    return pd.DataFrame({"cell": list(paper.FIG2_PROBABILITIES), "value": list(paper.FIG2_PROBABILITIES.values())})


def _fig2_results(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"quantity": "cell"})[["cell", "value"]]


def _table5_paper() -> pd.DataFrame:
    return _cells5(paper.table5())


def _cells5(frame: pd.DataFrame) -> pd.DataFrame:
    cell = frame["setting"] + " · " + frame["dataset"] + " · PCK@" + frame["alpha"].map("{:.2f}".format)
    return pd.DataFrame({"cell": cell, "value": frame["value"]})


def _table5_results(frame: pd.DataFrame) -> pd.DataFrame:
    from .tables import table5_headline

    return _cells5(table5_headline(frame, form="paper"))


def _table8_cells(frame: pd.DataFrame) -> pd.DataFrame:
    if "aggregate" in frame:
        frame = frame[(frame["aggregate"] == "keypoint_pooled") & (frame["category"] == "all")]
    return pd.DataFrame({"cell": frame["setting"] + " · PCK@" + frame["alpha"].map("{:.2f}".format),
                         "value": frame["value"]})


TABLE7_COLUMNS = (("SD", "correct match"), ("SD", "false match"), ("DINO", "correct match"), ("DINO", "false match"))


def _table7_paper() -> pd.DataFrame:
    rows = [(f"{scenario} · {features} {match}", value) for scenario, values in paper.TABLE7.items()
            for (features, match), value in zip(TABLE7_COLUMNS, values) if value is not None]
    return pd.DataFrame(rows, columns=["cell", "value"])


def _table7_results(frame: pd.DataFrame) -> pd.DataFrame:
    cell = frame["scenario"].astype(str) + " · " + frame["features"] + " " + frame["match"]
    return pd.DataFrame({"cell": cell, "value": frame["value"]})


PROJECTION = "needs the ODISE checkpoint (non-commercial licence): -p captioner_checkpoint=PATH"
TABLES: tuple[TableSpec, ...] = (
    TableSpec("table1", "Table 1: UNet layers", "01_unet_layers", "table1", lambda: _pck_cells(paper.table1()), _pck_cells, 1.0),
    TableSpec("table2", "Table 2: reduction", "02_reduction", "table2", lambda: _pck_cells(paper.table2()), _pck_cells, 1.0,
              {"projection": PROJECTION}),
    TableSpec("table3", "Table 3: fusion strategy", "03_fusion_strategy", "table3", lambda: _pck_cells(paper.table3()),
              _pck_cells, 1.0),
    TableSpec("table5", "Table 5: DINOv2 variants", "05_dino_variants", "table5", _table5_paper, _table5_results, 1.0),
    TableSpec("table6", "Table 6: outcomes", "06_outcomes", "table6", _table6_paper, _table6_results, 1.0),
    TableSpec("fig2", "Fig. 2: conditional probabilities", "06_outcomes", "fig2", _fig2_paper, _fig2_results, 2.0),
    TableSpec("table7", "Table 7: relative distances", "06_outcomes", "table7", _table7_paper, _table7_results, 0.02),
    TableSpec("table8", "Table 8: CUB-200", "08_cub200", "table8", lambda: _table8_cells(paper.table8()), _table8_cells,
              1.0, {name: "cited baseline (paper's number only)" for name in paper.TABLE8_BASELINES}),
)


def profiles_present(results_root: Path) -> list[str]:
    """Profile folders under ``results/`` — those holding a run record or results tables (smoke first,
    then paper, then any other); ``results/benchmark/`` is not a profile."""
    root = Path(results_root)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and ((p / "runs.json").is_file() or any(p.glob("*.csv")))) \
        if root.is_dir() else []
    order = {"smoke": 0, "paper": 1}
    return sorted(found, key=lambda name: (order.get(name, 2), name))


def notebook_status(results_root: Path, profile: str) -> dict[str, str]:
    """Last run's status per notebook stem for a profile ({} when no run record exists)."""
    record = Path(results_root) / profile / "runs.json"
    if not record.is_file():
        return {}
    return {run["notebook"]: run["status"] for run in json.loads(record.read_text()).get("notebooks", [])}


def _verdict(profile: str, delta: float, tolerance: float) -> str:
    if profile == "smoke":
        return "smoke run: not comparable"
    return "reproduced" if abs(delta) <= tolerance else "differs"


def status_table(results_root: str | Path) -> pd.DataFrame:
    """One row per (table, cell, profile): paper, reproduced, Δ and verdict."""
    results_root = Path(results_root)
    rows = []
    for spec in TABLES:
        cells = spec.paper_cells()
        for profile in profiles_present(results_root):
            failed = notebook_status(results_root, profile).get(spec.notebook) == "failed"
            path = results_root / profile / f"{spec.results}.csv"
            ours = spec.result_cells(pd.read_csv(path)) if path.is_file() and not failed else None
            values = dict(zip(ours["cell"], ours["value"])) if ours is not None else {}
            for cell, value in zip(cells["cell"], cells["value"]):
                reproduced = values.get(cell)
                if failed:
                    verdict = "failed in the last run (see its page)"
                elif reproduced is None:
                    reason = next((why for key, why in spec.not_run.items() if cell.startswith(key)), None)
                    verdict = f"not run: {reason}" if reason else "not run"
                else:
                    verdict = _verdict(profile, reproduced - value, spec.tolerance)
                rows.append({"table": spec.title, "cell": cell, "profile": profile, "paper": value,
                             "reproduced": reproduced, "delta": None if reproduced is None else reproduced - value,
                             "verdict": verdict})
    return pd.DataFrame(rows, columns=["table", "cell", "profile", "paper", "reproduced", "delta", "verdict"])


def summary(status: pd.DataFrame) -> pd.DataFrame:
    """Counts of verdicts per table and profile."""
    if status.empty:
        return pd.DataFrame()
    kinds = status["verdict"].str.split(":").str[0].str.split(" \\(").str[0]
    return status.assign(verdict=kinds).pivot_table(index=["table", "profile"], columns="verdict", values="cell",
                                                    aggfunc="count", fill_value=0, sort=False)

