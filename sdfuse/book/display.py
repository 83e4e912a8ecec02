"""What the notebooks display: banners, paper-vs-reproduced tables, figures, glue, provenance.

Notebooks stay thin: they call these helpers and nothing here computes a number that
:mod:`sdfuse.tables` did not.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .profiles import Run
from .provenance import collect
from .status import NOT_COMPARABLE, TABLES

PCK_ROUNDING = 0.05
"""Half a unit of the paper's last printed digit for PCK (one decimal): a paper value counts as
inside an interval it misses by no more than its own rounding (:func:`sdfuse.status.verdict`)."""


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

    The records attached to the table (:mod:`sdfuse.records`: per-keypoint rows, TSS per-sample
    rows) go beside it as ``<name>.<kind>.csv.gz``. Every file is written atomically
    (:func:`sdfuse.storage.atomic_write`: temporary file, fsync, rename), records first and the CSV
    last, so a killed or failed run leaves the previous complete files or none, never a truncated
    one; a full disk raises :class:`~sdfuse.errors.StorageError` naming the file. The bytes depend
    only on the data: ``\n`` line endings, floats written by pandas' shortest round-trip repr, gzip
    without a time stamp.
    """
    from .records import attached, records_path, write_records
    from .storage import atomic_write, atomic_write_text, remove_stray_tmp

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
    (:func:`sdfuse.status.verdict`).
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
            css[column] = [_verdict_colour(v) if judged else "color: #777" for v in verdicts[alpha]]
        return css

    styled = (wide.style.format("{:.1f}", subset=numbers, na_rep="–").format("{:+.1f}", subset=list(deltas), na_rep="–")
              .apply(colours, axis=None)
              .set_caption(f"{caption}; 95 % CI: bootstrap interval over pairs; Δ = ours − paper"))
    if judged:
        styled = styled.map(_verdict_colour, subset=[("", "verdict")])
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


def _error_bars(rows: pd.DataFrame) -> np.ndarray:
    """(2, n) distances from each reproduced value to its interval bounds (0 without an interval)."""
    low = (rows["reproduced"] - rows["ci_low"]).clip(lower=0).fillna(0)
    high = (rows["ci_high"] - rows["reproduced"]).clip(lower=0).fillna(0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def _paired_bars(rows: pd.DataFrame, panel: str, xlabel: str, ylabel: str, columns: int):
    """One panel per value of ``panel``: paper (grey) and reproduced (blue, 95 % interval as error
    bars) per setting."""
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(rows[panel]))
    ncols = min(columns, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, panels):
        part = rows[rows[panel] == name]
        x = np.arange(len(part))
        ax.bar(x - 0.2, part["paper"], width=0.4, color="#8c8c8c", label="paper")
        ax.bar(x + 0.2, part["reproduced"], width=0.4, color="#2f6fdf", label="reproduced",
               yerr=_error_bars(part), error_kw={"ecolor": "black", "capsize": 2, "elinewidth": 0.8})
        ax.set_xticks(x, part["setting"], rotation=30, ha="right", fontsize=8)
        ax.set_title(str(name))
        ax.set_xlabel(xlabel)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_comparison(comparison: pd.DataFrame, alpha: float = 0.10, xlabel: str = "setting"):
    """Bar chart of PCK@α per setting: paper vs reproduced with its 95 % interval, one panel per method."""
    rows = comparison[np.isclose(comparison["alpha"], alpha)]
    return _paired_bars(rows, "method", xlabel, f"PCK@{alpha:.2f} (%)", columns=3)


def glue_value(name: str, value: float) -> None:
    """Glue one number for the book's summary pages (myst-nb)."""
    from myst_nb import glue

    glue(name, float(value), display=False)


def alpha_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the α sweep for the curve: mean of per-category PCK, every threshold."""
    return table[(table["aggregate"] == "category_mean") & (table["category"] == "all")]


def curve_value(curve: pd.DataFrame, fusion_alpha: float, alpha: float) -> float:
    """PCK@alpha of the fusion with weight ``fusion_alpha``."""
    row = curve[np.isclose(curve["fusion_alpha"], fusion_alpha) & np.isclose(curve["alpha"], alpha)]
    return float(row["value"].item())


def plot_alpha_curve(curve: pd.DataFrame, paper_default: float):
    """PCK against the fusion weight α, one line per threshold with its 95 % band, and the paper's default point."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, curve["alpha"].nunique()))
    for colour, (kappa, line) in zip(colours, curve.sort_values("fusion_alpha").groupby("alpha")):
        ax.plot(line["fusion_alpha"], line["value"], marker="o", color=colour, label=f"{kappa:g}")
        ax.fill_between(line["fusion_alpha"], line["ci_low"], line["ci_high"], color=colour, alpha=0.2, linewidth=0)
    ax.scatter([0.5], [paper_default], color="black", marker="*", s=120, zorder=5, label="paper, α = 0.5, κ = 0.10")
    ax.set(xlabel="α (weight on SD; 0 = DINOv2 alone, 1 = SD alone)", ylabel="PCK (%)",
           title="SPair-71k, mean of per-category PCK (bands: 95 % bootstrap interval)")
    ax.legend(title="κ")
    plt.close(fig)
    return fig


def save_outcomes(results: dict[str, pd.DataFrame], records: pd.DataFrame, run: Run) -> None:
    """Write Table 6 (shares per category), Fig. 2 (probabilities) and Table 7 (relative distances) of
    :func:`sdfuse.outcomes.outcome_tables` as tidy CSVs, the keypoint records beside Table 6."""
    from .records import attach

    save_results(attach(results["table6"].copy(), keypoints=records), run, "table6")
    save_results(results["fig2"], run, "fig2")
    save_results(results["table7"], run, "table7")


def glue_outcomes(results: dict[str, pd.DataFrame]) -> None:
    """Glue the headline shares and probabilities of the outcome analysis."""
    shares = results["table6"][results["table6"]["category"] == "all"].set_index("outcome")["value"]
    probabilities = results["fig2"].set_index("quantity")["value"]
    glue_value("outcomes_ratio_011", shares["011"])
    glue_value("outcomes_ratio_101", shares["101"])
    glue_value("outcomes_p_fuse_given_sd_only", probabilities["P(Fuse ✓ | SD ✓, DINO ✗)"])
    glue_value("outcomes_p_fuse_given_dino_only", probabilities["P(Fuse ✓ | SD ✗, DINO ✓)"])


def outcome_view(table6: pd.DataFrame, paper_ratios: dict, profile: str) -> pd.DataFrame:
    """Table 6 beside the paper: share (%) of keypoints per outcome class, with its 95 % interval."""
    ours = table6[table6["category"] == "all"].set_index("outcome")
    view = pd.DataFrame({"paper": pd.Series(paper_ratios), "reproduced": ours["value"]})
    view["95 % CI"] = interval_text(ours["ci_low"], ours["ci_high"], digits=2)
    view["Δ"] = view["reproduced"] - view["paper"]
    view.index.name = "SD DINO Fuse"
    if profile in NOT_COMPARABLE:
        view["verdict"] = f"{profile} run: not comparable"
    return view.round(2)


def probability_view(fig2: pd.DataFrame, from_paper_table: dict, stated: dict):
    """Fig. 2's probabilities: this run (with its 95 % interval), recomputed from the paper's Table 6,
    and as stated in the text."""
    ours = fig2.set_index("quantity")
    view = pd.DataFrame({"reproduced": ours["value"], "95 % CI": interval_text(ours["ci_low"], ours["ci_high"]),
                         "from paper's Table 6": pd.Series(from_paper_table),
                         "stated in the text": pd.Series(stated)}).reindex(ours.index)
    numbers = ["reproduced", "from paper's Table 6", "stated in the text"]
    return view.style.format("{:.1f}", subset=numbers, na_rep="–")


def plot_probabilities(fig2: pd.DataFrame, stated: dict):
    """Bar chart of the four conditional probabilities, this run (with its 95 % interval) vs the paper's text."""
    import matplotlib.pyplot as plt

    names = list(stated)
    ours = fig2.set_index("quantity").reindex(names).rename(columns={"value": "reproduced"})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    positions = np.arange(len(names))
    ax.bar(positions - 0.2, [stated[n] for n in names], width=0.4, color="#8c8c8c", label="paper")
    ax.bar(positions + 0.2, ours["reproduced"], width=0.4, color="#2f6fdf", label="reproduced",
           yerr=_error_bars(ours), error_kw={"ecolor": "black", "capsize": 2, "elinewidth": 0.8})
    ax.set_xticks(positions, [n.replace("P(", "").replace(")", "") for n in names], fontsize=8)
    ax.set_ylabel("probability (%)")
    ax.legend()
    plt.close(fig)
    return fig


def relative_distance_view(table7: pd.DataFrame, paper_table: dict):
    """Table 7 beside the paper ("–" where the paper has no value), with this run's 95 % intervals."""
    from .outcomes import DISTANCE_COLUMNS

    columns = pd.MultiIndex.from_tuples(list(DISTANCE_COLUMNS))
    paper_frame = pd.DataFrame.from_dict(paper_table, orient="index", columns=columns).astype(float)
    wide = table7.assign(interval=interval_text(table7["ci_low"], table7["ci_high"], digits=3))
    ours = wide.pivot(index="scenario", columns=["features", "match"], values="value").reindex(
        index=paper_frame.index, columns=columns)
    spread = wide.pivot(index="scenario", columns=["features", "match"], values="interval").reindex(
        index=paper_frame.index, columns=columns)
    view = pd.concat({"paper": paper_frame, "reproduced": ours, "95 % CI": spread}, axis=1)
    numbers = [c for c in view.columns if c[0] != "95 % CI"]
    return view.style.format("{:.3f}", subset=numbers, na_rep="–")


def plot_relative_distances(records: pd.DataFrame):
    """Distributions of SD's and DINO's relative distance at the ground-truth cell."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, 1, 21)
    ax.hist(records["rel_SD_gt"], bins=bins, alpha=0.6, label="SD", color="#d1495b")
    ax.hist(records["rel_DINO_gt"], bins=bins, alpha=0.6, label="DINOv2", color="#2f6fdf")
    ax.set(xlabel="relative distance at the ground-truth cell (0 = nearest)", ylabel="keypoints")
    ax.legend()
    plt.close(fig)
    return fig


VERDICT_COLOURS = {"reproduced": "#1a7f37", "differs": "#cf222e", "failed": "#cf222e", "not run": "#9a6700",
                   "smoke run": "#777", "rehearsal run": "#777"}


def _verdict_colour(verdict: str) -> str:
    colour = next((c for prefix, c in VERDICT_COLOURS.items() if str(verdict).startswith(prefix)), "#000")
    return f"color: {colour}"


HEADLINE = {"sd": "2+5+8 · SD · PCK@0.10", "fuse": "2+5+8 · Fuse · PCK@0.10"}
"""The landing page's headline cells (Table 1, default layers), glued as ``headline_<key>_pck10[_paper]``."""


def glue_status(status: pd.DataFrame, profile: str) -> None:
    """Glue, for the landing page, the number of cells, how many each profile reproduced, the
    headline cells of ``profile`` as text: the number, or "not available: <verdict>" when the status
    does not show one (failed, interrupted, not run), so the landing page follows the same rule; and
    its one-glance summary, a row per table (:func:`sdfuse.status.headlines`) as
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


def glue_text(name: str, text: str) -> None:
    """Glue one string for the book's pages (``{glue:text}`` shows it without quotes)."""
    from myst_nb import glue

    glue(name, str(text), display=False)


def status_summary_view(status: pd.DataFrame):
    """Verdict counts per table and profile."""
    from .status import summary

    return summary(status)


def status_view(status: pd.DataFrame):
    """Every cell, paper vs each profile, with coloured verdicts."""
    view = status.set_index(["table", "cell", "profile"])
    return (view.style.format({"paper": "{:.3g}", "reproduced": "{:.3g}", "ci_low": "{:.3g}", "ci_high": "{:.3g}",
                               "delta": "{:+.3g}"}, na_rep="–")
            .map(_verdict_colour, subset=["verdict"]))


def run_record_views(results_root: Path) -> None:
    """Display, per profile, how the last run of each notebook went, the link to its results bundle
    (:mod:`sdfuse.bundle`) and the provenance of the latest run; then the benchmark and the
    mutation-testing report (``results/quality/mutation.json``, :mod:`sdfuse.quality`) when present.
    Every path and message is shown in its display form (:mod:`sdfuse.paths`)."""
    from IPython.display import Markdown, display

    from . import run_record
    from .paths import display_path, display_text
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
    (:mod:`sdfuse.bundle`; the link is relative to the working folder, the page's own), or why there is
    none. The cell that displays it renders Markdown as MyST (``mystnb: {markdown_format: myst}``), so
    the book copies the zip into its HTML."""
    import os
    import zipfile

    from .bundle import BENCHMARK, bundle_path
    from .paths import book_folder, display_path

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
    from .manifests import MANIFEST_DIR, load_manifest

    rows = []
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        manifest = load_manifest(path.stem)
        source = manifest.get("model_id") or ", ".join(manifest.get("urls", []) or []) or "see how_to_get"
        rows.append({"name": manifest.get("name", path.stem), "kind": manifest.get("kind"), "source": source,
                     "licence": manifest.get("licence"), "citation": manifest.get("citation")})
    return pd.DataFrame(rows).set_index("name")


def per_dataset_views(comparison: pd.DataFrame, profile: str) -> None:
    """Display one paper-vs-ours table per benchmark (Table 5)."""
    from IPython.display import Markdown, display

    for dataset, rows in comparison.groupby("dataset", sort=False):
        display(Markdown(f"**{dataset}**"))
        threshold = "bbox" if dataset == "SPair-71k" else "image size" if dataset == "PF-Pascal" else "α·max(H, W), ≤"
        display(comparison_view(rows, profile, caption=f"PCK (%) on {dataset}, threshold {threshold}"))


def plot_table5(comparison: pd.DataFrame):
    """PCK of the four DINOv2 variants per benchmark column: paper vs ours with its 95 % interval."""
    rows = comparison.assign(column=comparison["dataset"] + " @" + comparison["alpha"].map("{:.2f}".format))
    return _paired_bars(rows, "column", "", "PCK (%)", columns=5)


def glue_table5(comparison: pd.DataFrame) -> None:
    """Glue Fuse's and DINOv2's headline cells of Table 5."""
    for _, row in comparison[comparison["setting"].isin(["Fuse", "DINOv2"])].iterrows():
        key = f"table5_{row['setting'].lower()}_{row['dataset'].replace('/', '_').replace('-', '').replace('.', '')}"
        glue_value(f"{key}_{int(round(row['alpha'] * 100)):02d}", row["reproduced"])
