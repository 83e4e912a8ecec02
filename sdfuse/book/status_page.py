"""The reproduction-status page (notebook ``00_status``): the landing page's glue and the status views.
"""
from __future__ import annotations

import pandas as pd

from .pages import glue_text, glue_value, verdict_colour
from .status import TABLES


HEADLINE = {"sd": "2+5+8 · SD · PCK@0.10", "fuse": "2+5+8 · Fuse · PCK@0.10"}
"""The landing page's headline cells (Table 1, default layers), glued as ``headline_<key>_pck10[_paper]``."""


def glue_status(status: pd.DataFrame, profile: str) -> None:
    """Glue, for the landing page, the number of cells, how many each profile reproduced, the
    headline cells of ``profile`` as text: the number, or "not available: <verdict>" when the status
    does not show one (failed, interrupted, not run), so the landing page follows the same rule; and
    its one-glance summary, a row per table (:func:`sdfuse.book.status.headlines`) as
    ``summary_<table>_{cell,paper,reproduced,verdict}``, with the profile as ``summary_profile``."""
    from .status import headlines

    glue_text("status_cells", f"{status[['table', 'cell']].drop_duplicates().shape[0]}")
    glue_text("summary_profile", profile)
    for row in headlines(status, profile).itertuples():
        for column in ("cell", "paper", "reproduced", "verdict"):
            glue_text(f"summary_{row.key}_{column}", getattr(row, column))
    for name, group in status.groupby("profile"):
        glue_value(f"status_{name}_reproduced", int((group["verdict"] == "reproduced").sum()))
        glue_value(f"status_{name}_computed", int(group["reproduced"].notna().sum()))
    for key, cell in HEADLINE.items():
        rows = status[(status["table"] == TABLES[0].title) & (status["cell"] == cell)]
        paper_value = paper_cell(cell)
        ours = rows[rows["profile"] == profile]
        if ours.empty:
            text = f"not available: no {profile} results"
        elif pd.isna(ours["reproduced"].iloc[0]):
            text = f"not available: {ours['verdict'].iloc[0]}"
        else:
            text = f"{ours['reproduced'].iloc[0]:.1f}"
        glue_text(f"headline_{key}_pck10", text)
        glue_text(f"headline_{key}_pck10_paper", f"{paper_value:.1f}")


def paper_cell(cell: str) -> float:
    """The paper's value of one Table 1 cell of the status table."""
    cells = TABLES[0].paper_cells()
    return float(cells.loc[cells["cell"] == cell, "value"].item())


def status_summary_view(status: pd.DataFrame):
    """Verdict counts per table and profile."""
    from .status import summary

    return summary(status)


def status_view(status: pd.DataFrame):
    """Every cell, paper vs each profile, with coloured verdicts."""
    view = status.set_index(["table", "cell", "profile"])
    return (view.style.format({"paper": "{:.3g}", "reproduced": "{:.3g}", "ci_low": "{:.3g}", "ci_high": "{:.3g}",
                               "delta": "{:+.3g}"}, na_rep="–")
            .map(verdict_colour, subset=["verdict"]))
