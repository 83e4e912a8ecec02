"""The reproduction status: every cell of every supplementary table, paper vs each profile's results.

It reads ``results/<profile>/*.csv`` and ``results/<profile>/runs.json`` for every profile folder
present, so a paper-profile run made elsewhere and copied into ``results/paper/`` shows up without
code changes. A table whose notebook's last run failed, was interrupted or is still running is
marked so, never shown stale (:mod:`sdfuse.book.run_record`); a missing results file is "not run", an
unreadable one is named.

The verdict of a paper-profile cell is *reproduced* when the paper's value lies inside the 95 %
bootstrap interval (``ci_low``, ``ci_high``) stored beside the reproduced value, widened by half a
unit of the paper's last printed digit (its rounding); *differs* otherwise (:func:`verdict`). Smoke
and rehearsal cells (random weights) are never comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..data.paths import display_path, display_text
from ..profiles.parameters import PROFILES
from ..tables import paper
from . import run_record


@dataclass(frozen=True)
class TableSpec:
    """How one supplementary table's cells are read from the paper and from a results folder."""

    key: str
    title: str
    notebook: str
    results: str
    paper_cells: Callable[[], pd.DataFrame]
    result_cells: Callable[[pd.DataFrame], pd.DataFrame]
    rounding: float
    """Half a unit of the last digit the paper prints for this table's values."""
    headline: str
    """The cell the landing page shows for this table (the paper's own setting)."""
    not_run: dict[str, str] = field(default_factory=dict)

    @property
    def digits(self) -> int:
        """Decimals the paper prints for this table's values."""
        return int(round(-np.log10(2 * self.rounding)))


def _cells(cell: pd.Series, frame: pd.DataFrame) -> pd.DataFrame:
    """Cells named ``cell`` with the value of ``frame`` and its interval (NaN where it has none)."""
    return pd.DataFrame({"cell": cell, "value": frame["value"], "ci_low": frame.get("ci_low", np.nan),
                         "ci_high": frame.get("ci_high", np.nan)})


def _pck_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells 'setting · method · PCK@α' of a long PCK table (paper or results, category mean)."""
    if "aggregate" in frame:
        frame = frame[(frame["aggregate"] == "category_mean") & (frame["category"] == "all")]
    return _cells(frame["setting"].astype(str) + " · " + frame["method"] + " · PCK@" + frame["alpha"].map("{:.2f}".format),
                  frame)


def _table6_paper() -> pd.DataFrame:
    return pd.DataFrame({"cell": [f"outcome {k}" for k in paper.TABLE6_RATIOS], "value": list(paper.TABLE6_RATIOS.values())})


def _table6_results(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["category"] == "all"]
    return _cells("outcome " + rows["outcome"].astype(str).str.zfill(3), rows)


def _fig2_paper() -> pd.DataFrame:
    return pd.DataFrame({"cell": list(paper.FIG2_PROBABILITIES), "value": list(paper.FIG2_PROBABILITIES.values())})


def _fig2_results(frame: pd.DataFrame) -> pd.DataFrame:
    return _cells(frame["quantity"], frame)


def _table5_paper() -> pd.DataFrame:
    return _cells5(paper.table5())


def _cells5(frame: pd.DataFrame) -> pd.DataFrame:
    return _cells(frame["setting"] + " · " + frame["dataset"] + " · PCK@" + frame["alpha"].map("{:.2f}".format), frame)


def _table5_results(frame: pd.DataFrame) -> pd.DataFrame:
    from ..tables.dino_variants import table5_headline

    return _cells5(table5_headline(frame, form="paper"))


def _table8_cells(frame: pd.DataFrame) -> pd.DataFrame:
    if "aggregate" in frame:
        frame = frame[(frame["aggregate"] == "keypoint_pooled") & (frame["category"] == "all")]
    return _cells(frame["setting"] + " · PCK@" + frame["alpha"].map("{:.2f}".format), frame)


TABLE7_COLUMNS = (("SD", "correct match"), ("SD", "false match"), ("DINO", "correct match"), ("DINO", "false match"))


def _table7_paper() -> pd.DataFrame:
    rows = [(f"{scenario} · {features} {match}", value) for scenario, values in paper.TABLE7.items()
            for (features, match), value in zip(TABLE7_COLUMNS, values) if value is not None]
    return pd.DataFrame(rows, columns=["cell", "value"])


def _table7_results(frame: pd.DataFrame) -> pd.DataFrame:
    return _cells(frame["scenario"].astype(str) + " · " + frame["features"] + " " + frame["match"], frame)


PROJECTION = "needs the ODISE checkpoint (non-commercial licence): -p captioner_checkpoint=PATH"
TABLES: tuple[TableSpec, ...] = (
    TableSpec("table1", "Table 1: UNet layers", "01_unet_layers", "table1", lambda: _pck_cells(paper.table1()), _pck_cells,
              0.05, "2+5+8 · Fuse · PCK@0.10"),
    TableSpec("table2", "Table 2: reduction", "02_reduction", "table2", lambda: _pck_cells(paper.table2()), _pck_cells,
              0.05, "PCA 256 · Fuse · PCK@0.10", {"projection": PROJECTION}),
    TableSpec("table3", "Table 3: fusion strategy", "03_fusion_strategy", "table3", lambda: _pck_cells(paper.table3()),
              _pck_cells, 0.05, "concat_normalized · Fuse · PCK@0.10"),
    TableSpec("table5", "Table 5: DINOv2 variants", "05_dino_variants", "table5", _table5_paper, _table5_results, 0.05,
              "Fuse · SPair-71k · PCK@0.10"),
    TableSpec("table6", "Table 6: outcomes", "06_outcomes", "table6", _table6_paper, _table6_results, 0.005,
              "outcome 111"),
    TableSpec("fig2", "Fig. 2: conditional probabilities", "06_outcomes", "fig2", _fig2_paper, _fig2_results, 0.05,
              "P(Fuse ✓ | SD ✓, DINO ✗)"),
    TableSpec("table7", "Table 7: relative distances", "06_outcomes", "table7", _table7_paper, _table7_results, 0.0005,
              "Average · SD correct match"),
    TableSpec("table8", "Table 8: CUB-200", "08_cub200", "table8", lambda: _table8_cells(paper.table8()), _table8_cells,
              0.05, "Fuse α=0.5 · PCK@0.10",
              {name: "cited baseline (paper's number only)" for name in paper.TABLE8_BASELINES}),
)


def profiles_present(results_root: Path) -> list[str]:
    """Profile folders under ``results/`` — those holding a run record or results tables (smoke first,
    then paper, then any other); ``results/benchmark/`` is not a profile."""
    root = Path(results_root)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and ((p / "runs.json").is_file() or any(p.glob("*.csv")))) \
        if root.is_dir() else []
    order = {name: rank for rank, name in enumerate(PROFILES)}       # smoke, rehearsal, paper; others after
    return sorted(found, key=lambda name: (order.get(name, len(order)), name))


NOT_CURRENT = {"failed": "failed in the last run (see its page)",
               "interrupted": "failed in the last run: interrupted (see its page)",
               "running": "not complete: its notebook is running now"}
"""Verdict of every cell of a table whose notebook's last run did not complete (by run state)."""


def not_shown(results_root: Path, profile: str, stem: str) -> str | None:
    """Why the tables of notebook ``stem`` are not shown for ``profile`` (None: they are current): its
    last run did not complete (:func:`sdfuse.book.run_record.state`), or the run record is unreadable."""
    record = run_record.read(Path(results_root) / profile)
    if record.get("problem"):
        return f"not shown: {record['problem']}"
    return NOT_CURRENT.get(run_record.state(record["notebooks"].get(stem)))


def _read_cells(spec: TableSpec, path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """A results file's cells, or why they cannot be read (None, None when the file is absent)."""
    if not path.is_file():
        return None, None
    try:
        return spec.result_cells(pd.read_csv(path)), None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, pd.errors.ParserError) as error:
        return None, (f"not shown: {display_path(path)} is unreadable ({type(error).__name__}: "
                      f"{display_text(str(error))}); run its notebook again")


NOT_COMPARABLE = ("smoke", "rehearsal")
"""Profiles with random weights: their numbers check the code path and are never judged against the paper."""


def verdict(profile: str, paper_value: float, low: float, high: float, rounding: float = 0.0) -> str:
    """"reproduced" when the paper's value lies in [low − rounding, high + rounding], the reproduced
    value's bootstrap interval widened by the paper's rounding; "differs" otherwise. Smoke cells are
    never comparable; a value stored without an interval is not judged."""
    if profile in NOT_COMPARABLE:
        return f"{profile} run: not comparable"
    if pd.isna(low) or pd.isna(high):
        return "not judged: no interval in the results (rerun the table)"
    return "reproduced" if low - rounding <= paper_value <= high + rounding else "differs"


def status_table(results_root: str | Path) -> pd.DataFrame:
    """One row per (table, cell, profile): paper, reproduced, its 95 % interval, Δ and verdict."""
    results_root = Path(results_root)
    rows = []
    for spec in TABLES:
        cells = spec.paper_cells()
        for profile in profiles_present(results_root):
            blocked = not_shown(results_root, profile, spec.notebook)
            path = results_root / profile / f"{spec.results}.csv"
            ours, unreadable = (None, None) if blocked else _read_cells(spec, path)
            columns = ["value", "ci_low", "ci_high"]
            found = ours.set_index("cell").reindex(columns=columns) if ours is not None else pd.DataFrame(columns=columns)
            found = found[~found.index.duplicated(keep="last")]
            for cell, value in zip(cells["cell"], cells["value"]):
                reproduced, low, high = found.loc[cell] if cell in found.index else (None, np.nan, np.nan)
                reproduced = None if reproduced is None or pd.isna(reproduced) else float(reproduced)
                if blocked or unreadable:
                    verdict_text = blocked or unreadable
                elif reproduced is None:
                    reason = next((why for key, why in spec.not_run.items() if cell.startswith(key)), None)
                    verdict_text = f"not run: {reason}" if reason else "not run"
                else:
                    verdict_text = verdict(profile, value, low, high, spec.rounding)
                rows.append({"table": spec.title, "cell": cell, "profile": profile, "paper": value,
                             "reproduced": reproduced, "ci_low": low, "ci_high": high,
                             "delta": None if reproduced is None else reproduced - value, "verdict": verdict_text})
    return pd.DataFrame(rows, columns=["table", "cell", "profile", "paper", "reproduced", "ci_low", "ci_high", "delta",
                                       "verdict"])


def summary(status: pd.DataFrame) -> pd.DataFrame:
    """Counts of verdicts per table and profile."""
    if status.empty:
        return pd.DataFrame()
    kinds = status["verdict"].str.split(":").str[0].str.split(" \\(").str[0]
    return status.assign(verdict=kinds).pivot_table(index=["table", "profile"], columns="verdict", values="cell",
                                                    aggfunc="count", fill_value=0, sort=False)



def headlines(status: pd.DataFrame, profile: str) -> pd.DataFrame:
    """One row per table for the landing page: its headline cell (:attr:`TableSpec.headline`), the
    paper's value, ``profile``'s value with its 95 % interval ("–" where the status shows none) and
    the verdict, as text in the paper's precision."""
    rows = []
    for spec in TABLES:
        ours = status[(status["table"] == spec.title) & (status["cell"] == spec.headline)
                      & (status["profile"] == profile)]
        paper_value = spec.paper_cells().set_index("cell").loc[spec.headline, "value"]
        reproduced, verdict_text = "–", f"not run: no {profile} results"
        if not ours.empty:
            row = ours.iloc[0]
            verdict_text = row["verdict"]
            if row["reproduced"] is not None and pd.notna(row["reproduced"]):
                reproduced = f"{row['reproduced']:.{spec.digits}f}"
                if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
                    reproduced += f" [{row['ci_low']:.{spec.digits}f}, {row['ci_high']:.{spec.digits}f}]"
        rows.append({"key": spec.key, "table": spec.title, "notebook": spec.notebook, "cell": spec.headline,
                     "paper": f"{paper_value:.{spec.digits}f}", "reproduced": reproduced, "verdict": verdict_text})
    return pd.DataFrame(rows, columns=["key", "table", "notebook", "cell", "paper", "reproduced", "verdict"])
