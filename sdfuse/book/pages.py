"""What the pages display: the banner, the results files, paper-vs-reproduced tables, glue, provenance.

Notebooks stay thin: they call these helpers and nothing here computes a number that
:mod:`sdfuse.tables` did not. Displays of one page only live in its ``*_page`` module,
the shared bar charts in :mod:`sdfuse.book.figures`.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pandas as pd

from ..profiles.runs import Run
from .provenance import collect
from .status import NOT_COMPARABLE

PCK_ROUNDING = 0.05
"""Half a unit of the paper's last printed digit for PCK (one decimal): a paper value counts as
inside an interval it misses by no more than its own rounding (:func:`sdfuse.book.status.verdict`)."""


def quiet_libraries() -> None:
    """Silence the model libraries' progress bars and advisories in rendered notebooks."""
    warnings.filterwarnings("ignore", message="IProgress not found")
    import diffusers
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    diffusers.logging.set_verbosity_error()
    logging.getLogger("sdfuse").setLevel(logging.WARNING)


def banner_html(run: Run, inputs: str | None = None) -> str:
    """An admonition saying which profile produced the numbers on the page; ``inputs``: what the page ran
    on, when not the profile's dataset (e.g. "two photographs that matplotlib ships")."""
    if run.is_smoke:
        return ('<div class="admonition warning sdfuse-smoke-banner"><p class="admonition-title">'
                'Smoke profile: these numbers are NOT the paper\'s</p><p>They come from tiny randomly '
                'initialised models (SD v1.5 and DINOv2 module structure, toy widths) on '
                f'{inputs or "a synthetic SPair-71k-format dataset"} at G = {run.grid}. They check that the whole pipeline runs; they '
                'say nothing about the method. Run the <code>paper</code> profile on a GPU for real numbers.</p></div>')
    if run.is_rehearsal:
        return ('<div class="admonition warning sdfuse-rehearsal-banner"><p class="admonition-title">Rehearsal '
                'profile: real architectures, random weights: checks the paper path, not the paper</p><p>SD v1.5 '
                'and DINOv2 ViT-B/14 at their real sizes with seeded random weights, loaded from the real on-disk '
                f'layouts, at the paper\'s settings (G = {run.grid}, {run.sd.dtype} on {run.sd.device}) on '
                f'{inputs or "synthetic data at real image sizes"}. The numbers mean nothing; shapes, memory and time are real.</p></div>')
    return ('<div class="admonition note"><p class="admonition-title">Paper profile</p><p>SD v1.5 and DINOv2 '
            f'ViT-B/14 with real weights on {inputs or "the real dataset"}, G = {run.grid}, {run.sd.dtype} on {run.sd.device}.</p></div>')


def banner(run: Run, inputs: str | None = None):
    """The banner as a displayable HTML object."""
    from IPython.display import HTML

    return HTML(banner_html(run, inputs))


def save_results(table: pd.DataFrame, run: Run, name: str) -> Path:
    """Write ``results/<profile>/<name>.csv``, its provenance JSON and the records it carries; returns the CSV path.

    The records attached to the table (:mod:`sdfuse.evaluation.records`: per-keypoint rows, TSS per-sample
    rows) go beside it as ``<name>.<kind>.csv.gz``. Every file is written atomically
    (:func:`sdfuse.data.storage.atomic_write`: temporary file, fsync, rename), records first and the CSV
    last, so a killed or failed run leaves the previous complete files or none, never a truncated
    one; a full disk raises :class:`~sdfuse.errors.StorageError` naming the file. The bytes depend
    only on the data: ``\n`` line endings, floats written by pandas' shortest round-trip repr, gzip
    without a time stamp.
    """
    from ..evaluation.records import attached, records_path, write_records
    from ..data.storage import atomic_write, atomic_write_text, remove_stray_tmp

    remove_stray_tmp(run.results_dir, depth=0)                     # left by a killed earlier run
    path = run.results_dir / f"{name}.csv"
    fix = "point results_dir to a writable disk with space"
    for kind, frame in attached(table).items():
        atomic_write(records_path(path, kind), lambda tmp, frame=frame: write_records(frame, tmp),
                     what=f"the {kind} records", fix=fix)
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\n"), what="the results table",
                 fix=fix)
    record = collect(run.describe())
    atomic_write_text(run.results_dir / f"{name}.provenance.json", json.dumps(record, indent=1),
                      what="the provenance record", fix=fix)
    return path


def compare(table: pd.DataFrame, paper: pd.DataFrame, aggregate: str | None, profile: str,
            not_run: dict[str, str] | None = None, keys: tuple[str, ...] = ("setting", "method", "alpha"),
            rounding: float = PCK_ROUNDING) -> pd.DataFrame:
    """Paper beside reproduced, with its interval, Δ = reproduced − paper and a verdict, matched on ``keys``.

    ``aggregate`` selects the across-category aggregate of ``table`` (None: ``table`` is already
    one value per cell); ``not_run`` maps a setting this run cannot compute to the reason. The
    verdict says whether the paper's value lies inside the reproduced value's bootstrap interval
    (:func:`sdfuse.book.status.verdict`).
    """
    from .status import verdict

    ours = table if aggregate is None else table[(table["aggregate"] == aggregate) & (table["category"] == "all")]
    keys = list(keys)
    ours = ours.reindex(columns=keys + ["value", "ci_low", "ci_high"])
    merged = paper.rename(columns={"value": "paper"}).merge(ours.rename(columns={"value": "reproduced"}), on=keys,
                                                             how="left")
    merged["delta"] = merged["reproduced"] - merged["paper"]
    merged["verdict"] = [verdict(profile, *cell, rounding)
                         for cell in zip(merged["paper"], merged["ci_low"], merged["ci_high"])]
    missing = merged["reproduced"].isna()
    merged.loc[missing, "verdict"] = merged.loc[missing, "setting"].map(
        lambda s: f"not run: {(not_run or {}).get(s, 'not computed by this run')}")
    return merged


def interval_text(low: pd.Series, high: pd.Series, digits: int = 1) -> pd.Series:
    """"[low, high]" per cell ("–" without an interval)."""
    return pd.Series([f"[{a:.{digits}f}, {b:.{digits}f}]" if pd.notna(a) and pd.notna(b) else "–"
                      for a, b in zip(low, high)], index=low.index)


def comparison_view(comparison: pd.DataFrame, profile: str, caption: str = "PCK (%) on SPair-71k, bbox threshold"):
    """Styled view: one row per cell key; per threshold the paper, ours, our 95 % interval and Δ
    (green when the paper's value is inside the interval, red otherwise), and the verdict."""
    index = [c for c in ("setting", "method") if c in comparison]
    parts = {"paper": "paper", "reproduced": "ours", "interval": "95 % CI", "delta": "Δ"}
    frame = comparison.assign(interval=interval_text(comparison["ci_low"], comparison["ci_high"]))
    alphas = list(dict.fromkeys(comparison["alpha"]))
    wide = frame.pivot_table(index=index, columns="alpha", values=list(parts), aggfunc="first", sort=False,
                             dropna=False)
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples([(what, a) for a in alphas for what in parts]))
    verdicts = frame.pivot_table(index=index, columns="alpha", values="verdict", aggfunc="first", sort=False,
                                 dropna=False).reindex(index=wide.index, columns=alphas)
    wide.columns = pd.MultiIndex.from_tuples([(f"PCK@{a:.2f}", parts[what]) for what, a in wide.columns])
    numbers = [c for c in wide.columns if c[1] in ("paper", "ours")]
    deltas = {(f"PCK@{a:.2f}", "Δ"): a for a in alphas}
    judged = profile not in NOT_COMPARABLE
    if not judged:
        caption += f"; {profile} run: the differences are not comparable"
    else:
        row_verdicts = comparison.groupby(index, sort=False)["verdict"].agg(lambda v: "; ".join(dict.fromkeys(v)))
        wide[("", "verdict")] = row_verdicts.reindex(wide.index)

    def colours(data: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=data.index, columns=data.columns)
        for column, alpha in deltas.items():
            css[column] = [verdict_colour(v) if judged else "color: #777" for v in verdicts[alpha]]
        return css

    styled = (wide.style.format("{:.1f}", subset=numbers, na_rep="–").format("{:+.1f}", subset=list(deltas), na_rep="–")
              .apply(colours, axis=None)
              .set_caption(f"{caption}; 95 % CI: bootstrap interval over pairs; Δ = ours − paper"))
    if judged:
        styled = styled.map(verdict_colour, subset=[("", "verdict")])
    return styled


def aggregate_view(table: pd.DataFrame) -> pd.DataFrame:
    """All four aggregates (PROTOCOL §7.1, AMBIG-9) for every row, PCK@0.10."""
    rows = table[(table["category"] == "all") & (table["alpha"] == 0.10)]
    return rows.pivot_table(index=["setting", "method"], columns="aggregate", values="value", sort=False).round(1)[
        ["category_mean", "pair_weighted", "keypoint_pooled", "per_image"]]


def category_view(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per-category PCK (%) of one setting, methods × thresholds as columns."""
    rows = table[(table["aggregate"] == "per_category") & (table["setting"] == setting)]
    wide = rows.pivot_table(index="category", columns=["method", "alpha"], values="value")
    wide.columns = [f"{method} @{alpha:.2f}" for method, alpha in wide.columns]
    return wide.round(1)


def folded(view, summary: str):
    """``view`` (a DataFrame or its Styler) folded under a one-line ``summary`` that the reader opens:
    a long table shown after the results, without the code that makes it."""
    from html import escape

    from IPython.display import HTML

    return HTML(f'<details class="sdfuse-folded">\n<summary>{escape(summary)}</summary>\n{view.to_html()}\n</details>')


def glue_headlines(comparison: pd.DataFrame, prefix: str, setting: str) -> None:
    """Glue reproduced PCK (with its interval) and paper PCK of one setting for the book's summary pages (myst-nb)."""
    from myst_nb import glue

    for _, row in comparison[comparison["setting"] == setting].iterrows():
        key = f"{prefix}_{row['method'].lower()}_pck{int(round(row['alpha'] * 100)):02d}"
        glue(key, float(row["reproduced"]), display=False)
        glue(f"{key}_paper", float(row["paper"]), display=False)
        glue(f"{key}_ci_low", float(row["ci_low"]), display=False)
        glue(f"{key}_ci_high", float(row["ci_high"]), display=False)


def provenance_view(run: Run) -> pd.DataFrame:
    """The run's provenance as a two-column table."""
    record = collect(run.describe())
    packages = record.pop("packages")
    manifests = record.pop("data_manifests_sha256")
    rows = list(record.items()) + [(f"version of {k}", v) for k, v in packages.items()]
    rows += [(f"sha256 of data_manifests/{k}", v[:16] + "…") for k, v in manifests.items()]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def glue_value(name: str, value: float) -> None:
    """Glue one number for the book's summary pages (myst-nb)."""
    from myst_nb import glue

    glue(name, float(value), display=False)


VERDICT_COLOURS = {"reproduced": "#1a7f37", "differs": "#cf222e", "failed": "#cf222e", "not run": "#9a6700",
                   "smoke run": "#777", "rehearsal run": "#777"}


def verdict_colour(verdict: str) -> str:
    """The CSS text colour of a verdict, chosen by how it begins (:data:`VERDICT_COLOURS`)."""
    colour = next((c for prefix, c in VERDICT_COLOURS.items() if str(verdict).startswith(prefix)), "#000")
    return f"color: {colour}"


def glue_text(name: str, text: str) -> None:
    """Glue one string for the book's pages (``{glue:text}`` shows it without quotes)."""
    from myst_nb import glue

    glue(name, str(text), display=False)
