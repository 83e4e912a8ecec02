"""What the notebooks display: banners, paper-vs-reproduced tables, figures, glue, provenance.

Notebooks stay thin: they call these helpers and nothing here computes a number that
:mod:`sdfuse.tables` did not.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pandas as pd

from .profiles import Run
from .provenance import collect

TOLERANCE = 1.0
"""|Δ| in PCK points within which a paper-profile cell counts as reproduced."""


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


def banner_html(run: Run) -> str:
    """An admonition saying which profile produced the numbers on the page."""
    if run.is_smoke:
        return ('<div class="admonition warning sdfuse-smoke-banner"><p class="admonition-title">'
                'Smoke profile: these numbers are NOT the paper\'s</p><p>They come from tiny randomly '
                'initialised models (SD v1.5 and DINOv2 module structure, toy widths) on a synthetic '
                f'SPair-71k-format dataset at G = {run.grid}. They check that the whole pipeline runs; they '
                'say nothing about the method. Run the <code>paper</code> profile on a GPU for real numbers.</p></div>')
    return ('<div class="admonition note"><p class="admonition-title">Paper profile</p><p>SD v1.5 and DINOv2 '
            f'ViT-B/14 with real weights on the real dataset, G = {run.grid}, {run.sd.dtype} on {run.sd.device}.</p></div>')


def banner(run: Run):
    """The banner as a displayable HTML object."""
    from IPython.display import HTML

    return HTML(banner_html(run))


def save_results(table: pd.DataFrame, run: Run, name: str) -> Path:
    """Write ``results/<profile>/<name>.csv`` and its provenance JSON beside it; returns the CSV path."""
    run.results_dir.mkdir(parents=True, exist_ok=True)
    path = run.results_dir / f"{name}.csv"
    tmp = path.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    record = collect(run.describe())
    (run.results_dir / f"{name}.provenance.json").write_text(json.dumps(record, indent=1))
    return path


def compare(table: pd.DataFrame, paper: pd.DataFrame, aggregate: str, smoke: bool) -> pd.DataFrame:
    """Paper beside reproduced for one aggregate, with Δ = reproduced − paper and a verdict."""
    ours = table[(table["aggregate"] == aggregate) & (table["category"] == "all")]
    keys = ["setting", "method", "alpha"]
    merged = paper.rename(columns={"value": "paper"}).merge(
        ours[keys + ["value"]].rename(columns={"value": "reproduced"}), on=keys, how="left")
    merged["delta"] = merged["reproduced"] - merged["paper"]
    if smoke:
        merged["verdict"] = "smoke run: not comparable"
    else:
        merged["verdict"] = merged["delta"].abs().le(TOLERANCE).map({True: "reproduced", False: "differs"})
        merged.loc[merged["reproduced"].isna(), "verdict"] = "not run"
    return merged


def comparison_view(comparison: pd.DataFrame, smoke: bool):
    """Styled view: one row per (setting, method); per threshold the paper, ours and Δ (coloured)."""
    wide = comparison.pivot_table(index=["setting", "method"], columns="alpha",
                                  values=["paper", "reproduced", "delta"], sort=False)
    wide = wide.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    wide = wide.reindex(columns=pd.MultiIndex.from_product(
        [sorted(comparison["alpha"].unique()), ["paper", "reproduced", "delta"]]))
    wide.columns = pd.MultiIndex.from_tuples(
        [(f"PCK@{alpha:.2f}", {"reproduced": "ours", "delta": "Δ"}.get(what, what)) for alpha, what in wide.columns])
    deltas = [c for c in wide.columns if c[1] == "Δ"]

    def colour(value: float) -> str:
        if smoke or pd.isna(value):
            return "color: #777"
        return "color: #1a7f37" if abs(value) <= TOLERANCE else "color: #cf222e; font-weight: bold"

    return (wide.style.format("{:.1f}", na_rep="–").format("{:+.1f}", subset=deltas, na_rep="–")
            .map(colour, subset=deltas)
            .set_caption("PCK (%) on SPair-71k, bbox threshold; Δ = ours − paper"))


def aggregate_view(table: pd.DataFrame) -> pd.DataFrame:
    """All four aggregates (PROTOCOL §7.1, AMBIG-9) for every row, PCK@0.10."""
    rows = table[(table["category"] == "all") & (table["alpha"] == 0.10)]
    return rows.pivot_table(index=["setting", "method"], columns="aggregate", values="value", sort=False).round(1)


def category_view(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per-category PCK (%) of one setting, methods × thresholds as columns."""
    rows = table[(table["aggregate"] == "per_category") & (table["setting"] == setting)]
    wide = rows.pivot_table(index="category", columns=["method", "alpha"], values="value")
    wide.columns = [f"{method} @{alpha:.2f}" for method, alpha in wide.columns]
    return wide.round(1)


def glue_headlines(comparison: pd.DataFrame, prefix: str, setting: str) -> None:
    """Glue reproduced and paper PCK of one setting for the book's summary pages (myst-nb)."""
    from myst_nb import glue

    for _, row in comparison[comparison["setting"] == setting].iterrows():
        key = f"{prefix}_{row['method'].lower()}_pck{int(round(row['alpha'] * 100)):02d}"
        glue(key, float(row["reproduced"]), display=False)
        glue(f"{key}_paper", float(row["paper"]), display=False)


def provenance_view(run: Run) -> pd.DataFrame:
    """The run's provenance as a two-column table."""
    record = collect(run.describe())
    packages = record.pop("packages")
    manifests = record.pop("data_manifests_sha256")
    rows = list(record.items()) + [(f"version of {k}", v) for k, v in packages.items()]
    rows += [(f"sha256 of data_manifests/{k}", v[:16] + "…") for k, v in manifests.items()]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def plot_comparison(comparison: pd.DataFrame, alpha: float = 0.10):
    """Bar chart of PCK@α per setting: paper vs reproduced, one panel per method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = comparison[comparison["alpha"] == alpha].melt(
        id_vars=["setting", "method"], value_vars=["paper", "reproduced"], var_name="source", value_name="PCK")
    grid = sns.catplot(data=rows, x="setting", y="PCK", hue="source", col="method", kind="bar",
                       height=3.2, aspect=1.3, palette=["#8c8c8c", "#2f6fdf"])
    grid.set_axis_labels("SD layers", f"PCK@{alpha:.2f} (%)")
    grid.set_titles("{col_name}")
    plt.close(grid.figure)
    return grid.figure
