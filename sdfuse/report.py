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
    if run.is_rehearsal:
        return ('<div class="admonition warning sdfuse-rehearsal-banner"><p class="admonition-title">Rehearsal '
                'profile: real architectures, random weights: checks the paper path, not the paper</p><p>SD v1.5 '
                'and DINOv2 ViT-B/14 at their real sizes with seeded random weights, loaded from the real on-disk '
                f'layouts, at the paper\'s settings (G = {run.grid}, {run.sd.dtype} on {run.sd.device}) on synthetic '
                'data at real image sizes. The numbers mean nothing; shapes, memory and time are real.</p></div>')
    return ('<div class="admonition note"><p class="admonition-title">Paper profile</p><p>SD v1.5 and DINOv2 '
            f'ViT-B/14 with real weights on the real dataset, G = {run.grid}, {run.sd.dtype} on {run.sd.device}.</p></div>')


def banner(run: Run):
    """The banner as a displayable HTML object."""
    from IPython.display import HTML

    return HTML(banner_html(run))


def save_results(table: pd.DataFrame, run: Run, name: str) -> Path:
    """Write ``results/<profile>/<name>.csv`` and its provenance JSON beside it; returns the CSV path.

    Both files are written atomically (:func:`sdfuse.storage.atomic_write`: temporary file, fsync,
    rename), so a killed or failed run leaves the previous complete file or none, never a truncated
    one; a full disk raises :class:`~sdfuse.errors.StorageError` naming the file. The CSV bytes
    depend only on the table: ``\n`` line endings, floats written by pandas' shortest round-trip repr.
    """
    from .storage import atomic_write, atomic_write_text, remove_stray_tmp

    remove_stray_tmp(run.results_dir, depth=0)                     # left by a killed earlier run
    path = run.results_dir / f"{name}.csv"
    fix = "point results_dir to a writable disk with space"
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\n"), what="the results table",
                 fix=fix)
    record = collect(run.describe())
    atomic_write_text(run.results_dir / f"{name}.provenance.json", json.dumps(record, indent=1),
                      what="the provenance record", fix=fix)
    return path


def compare(table: pd.DataFrame, paper: pd.DataFrame, aggregate: str | None, smoke: bool,
            not_run: dict[str, str] | None = None, keys: tuple[str, ...] = ("setting", "method", "alpha")) -> pd.DataFrame:
    """Paper beside reproduced, with Δ = reproduced − paper and a verdict, matched on ``keys``.

    ``aggregate`` selects the across-category aggregate of ``table`` (None: ``table`` is already
    one value per cell); ``not_run`` maps a setting this run cannot compute to the reason.
    """
    ours = table if aggregate is None else table[(table["aggregate"] == aggregate) & (table["category"] == "all")]
    keys = list(keys)
    merged = paper.rename(columns={"value": "paper"}).merge(
        ours[keys + ["value"]].rename(columns={"value": "reproduced"}), on=keys, how="left")
    merged["delta"] = merged["reproduced"] - merged["paper"]
    if smoke:
        merged["verdict"] = "smoke run: not comparable"
    else:
        merged["verdict"] = merged["delta"].abs().le(TOLERANCE).map({True: "reproduced", False: "differs"})
    missing = merged["reproduced"].isna()
    merged.loc[missing, "verdict"] = merged.loc[missing, "setting"].map(
        lambda s: f"not run: {(not_run or {}).get(s, 'not computed by this run')}")
    return merged


def comparison_view(comparison: pd.DataFrame, smoke: bool, caption: str = "PCK (%) on SPair-71k, bbox threshold"):
    """Styled view: one row per cell key; per threshold the paper, ours and Δ (coloured), and the verdict."""
    index = [c for c in ("setting", "method") if c in comparison]
    wide = comparison.pivot_table(index=index, columns="alpha", values=["paper", "reproduced", "delta"],
                                  sort=False, dropna=False)
    alphas = list(dict.fromkeys(comparison["alpha"]))
    wide = wide.reindex(columns=pd.MultiIndex.from_product([["paper", "reproduced", "delta"], alphas]))
    wide = wide.swaplevel(axis=1).reindex(columns=pd.MultiIndex.from_product([alphas, ["paper", "reproduced", "delta"]]))
    wide.columns = pd.MultiIndex.from_tuples(
        [(f"PCK@{alpha:.2f}", {"reproduced": "ours", "delta": "Δ"}.get(what, what)) for alpha, what in wide.columns])
    deltas = [c for c in wide.columns if c[1] == "Δ"]
    numbers = list(wide.columns)
    if smoke:
        caption += "; smoke run: the differences are not comparable"
    else:
        verdicts = comparison.groupby(index, sort=False)["verdict"].agg(lambda v: "; ".join(dict.fromkeys(v)))
        wide[("", "verdict")] = verdicts.reindex(wide.index)

    def colour(value: float) -> str:
        if smoke or pd.isna(value):
            return "color: #777"
        return "color: #1a7f37" if abs(value) <= TOLERANCE else "color: #cf222e; font-weight: bold"

    styled = (wide.style.format("{:.1f}", subset=numbers, na_rep="–").format("{:+.1f}", subset=deltas, na_rep="–")
              .map(colour, subset=deltas).set_caption(f"{caption}; Δ = ours − paper"))
    if not smoke:
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


def plot_comparison(comparison: pd.DataFrame, alpha: float = 0.10, xlabel: str = "setting"):
    """Bar chart of PCK@α per setting: paper vs reproduced, one panel per method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = comparison[comparison["alpha"] == alpha].melt(
        id_vars=["setting", "method"], value_vars=["paper", "reproduced"], var_name="source", value_name="PCK")
    grid = sns.catplot(data=rows, x="setting", y="PCK", hue="source", col="method", kind="bar",
                       height=3.2, aspect=1.3, palette=["#8c8c8c", "#2f6fdf"])
    grid.set_axis_labels(xlabel, f"PCK@{alpha:.2f} (%)")
    grid.tick_params(axis="x", labelrotation=30)
    grid.set_titles("{col_name}")
    plt.close(grid.figure)
    return grid.figure


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
    """PCK against the fusion weight α, one line per threshold, with the paper's default point."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.6))
    sns.lineplot(data=curve, x="fusion_alpha", y="value", hue="alpha", marker="o", palette="viridis", ax=ax)
    ax.scatter([0.5], [paper_default], color="black", marker="*", s=120, zorder=5, label="paper, α = 0.5, κ = 0.10")
    ax.set(xlabel="α (weight on SD; 0 = DINOv2 alone, 1 = SD alone)", ylabel="PCK (%)",
           title="SPair-71k, mean of per-category PCK")
    ax.legend(title="κ")
    plt.close(fig)
    return fig


def save_outcomes(ratios: pd.DataFrame, probabilities: dict, distances: pd.DataFrame, run: Run) -> None:
    """Write Table 6 (ratios per category), Fig. 2 (probabilities) and Table 7 (relative distances) as tidy CSVs."""
    save_results(ratios.reset_index().melt(id_vars="outcome", var_name="category", value_name="value"), run, "table6")
    save_results(pd.DataFrame({"quantity": list(probabilities), "value": list(probabilities.values())}), run, "fig2")
    tidy = distances.stack(level=[0, 1], future_stack=True).rename("value").reset_index()
    save_results(tidy.set_axis(["scenario", "features", "match", "value"], axis=1), run, "table7")


def glue_outcomes(ratios: pd.DataFrame, probabilities: dict) -> None:
    """Glue the headline shares and probabilities of the outcome analysis."""
    glue_value("outcomes_ratio_011", ratios.loc["011", "all"])
    glue_value("outcomes_ratio_101", ratios.loc["101", "all"])
    glue_value("outcomes_p_fuse_given_sd_only", probabilities["P(Fuse ✓ | SD ✓, DINO ✗)"])
    glue_value("outcomes_p_fuse_given_dino_only", probabilities["P(Fuse ✓ | SD ✗, DINO ✓)"])


def outcome_view(ratios: pd.DataFrame, paper_ratios: dict, smoke: bool) -> pd.DataFrame:
    """Table 6 beside the paper: share (%) of keypoints per outcome class."""
    view = pd.DataFrame({"paper": pd.Series(paper_ratios), "reproduced": ratios["all"]})
    view["Δ"] = view["reproduced"] - view["paper"]
    view.index.name = "SD DINO Fuse"
    if smoke:
        view["verdict"] = "smoke run: not comparable"
    return view.round(2)


def probability_view(ours: dict, from_paper_table: dict, stated: dict):
    """Fig. 2's probabilities: this run, recomputed from the paper's Table 6, and as stated in the text."""
    view = pd.DataFrame({"reproduced": pd.Series(ours), "from paper's Table 6": pd.Series(from_paper_table),
                         "stated in the text": pd.Series(stated)}).reindex(list(ours))
    return view.style.format("{:.1f}", na_rep="–")


def plot_probabilities(ours: dict, stated: dict):
    """Bar chart of the four conditional probabilities, this run vs the paper's text."""
    import matplotlib.pyplot as plt

    names = list(stated)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    positions = np.arange(len(names))
    ax.bar(positions - 0.2, [stated[n] for n in names], width=0.4, color="#8c8c8c", label="paper")
    ax.bar(positions + 0.2, [ours[n] for n in names], width=0.4, color="#2f6fdf", label="reproduced")
    ax.set_xticks(positions, [n.replace("P(", "").replace(")", "") for n in names], fontsize=8)
    ax.set_ylabel("probability (%)")
    ax.legend()
    plt.close(fig)
    return fig


def relative_distance_view(distances: pd.DataFrame, paper_table: dict):
    """Table 7 beside the paper ("–" where the paper has no value)."""
    paper_frame = pd.DataFrame.from_dict(paper_table, orient="index", columns=distances.columns)
    view = pd.concat({"paper": paper_frame, "reproduced": distances.reindex(paper_frame.index)}, axis=1)
    return view.astype(float).style.format("{:.3f}", na_rep="–")


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
                   "smoke run": "#777"}


def _verdict_colour(verdict: str) -> str:
    colour = next((c for prefix, c in VERDICT_COLOURS.items() if str(verdict).startswith(prefix)), "#000")
    return f"color: {colour}"


def glue_status(status: pd.DataFrame) -> None:
    """Glue the number of cells, and how many each profile reproduced, for the landing page."""
    glue_value("status_cells", status[["table", "cell"]].drop_duplicates().shape[0])
    for profile, group in status.groupby("profile"):
        glue_value(f"status_{profile}_reproduced", int((group["verdict"] == "reproduced").sum()))
        glue_value(f"status_{profile}_computed", int(group["reproduced"].notna().sum()))


def status_summary_view(status: pd.DataFrame):
    """Verdict counts per table and profile."""
    from .status import summary

    return summary(status)


def status_view(status: pd.DataFrame):
    """Every cell, paper vs each profile, with coloured verdicts."""
    view = status.set_index(["table", "cell", "profile"])
    return (view.style.format({"paper": "{:.3g}", "reproduced": "{:.3g}", "delta": "{:+.3g}"}, na_rep="–")
            .map(_verdict_colour, subset=["verdict"]))


def run_record_views(results_root: Path) -> None:
    """Display, per profile, the notebooks of the last run and its provenance."""
    from IPython.display import Markdown, display

    from .status import profiles_present

    for profile in profiles_present(results_root):
        path = Path(results_root) / profile / "runs.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        display(Markdown(f"## Profile `{profile}`"))
        notebooks = pd.DataFrame(record.pop("notebooks", []))
        if not notebooks.empty:
            display(notebooks.set_index("notebook").style.format({"wall_time_s": "{:.1f}"}, na_rep="")
                    .map(lambda s: "color: #cf222e; font-weight: bold" if s == "failed" else "", subset=["status"]))
        packages = record.pop("packages", {})
        manifests = record.pop("data_manifests_sha256", {})
        parameters = record.pop("parameters", {})
        rows = [(k, v) for k, v in record.items()] + [(f"parameter {k}", v) for k, v in parameters.items()]
        rows += [(f"version of {k}", v) for k, v in packages.items()]
        rows += [(f"sha256 of data_manifests/{k}", v[:16] + "…") for k, v in manifests.items()]
        display(pd.DataFrame(rows, columns=["item", "value"]).set_index("item"))
    benchmark = Path(results_root) / "benchmark" / "benchmark.json"
    if benchmark.is_file():
        record = json.loads(benchmark.read_text())
        display(Markdown(f"## Benchmark\n\n`{record.get('command', 'make bench')}`, {record.get('generated_at', '')}, "
                         f"mode {record.get('mode', '?')}, on {record.get('machine', {}).get('cpu', '?')}."))
        display(benchmark_table(benchmark))


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


def per_dataset_views(comparison: pd.DataFrame, smoke: bool) -> None:
    """Display one paper-vs-ours table per benchmark (Table 5)."""
    from IPython.display import Markdown, display

    for dataset, rows in comparison.groupby("dataset", sort=False):
        display(Markdown(f"**{dataset}**"))
        threshold = "bbox" if dataset == "SPair-71k" else "image size" if dataset == "PF-Pascal" else "α·max(H, W), ≤"
        display(comparison_view(rows, smoke, caption=f"PCK (%) on {dataset}, threshold {threshold}"))


def plot_table5(comparison: pd.DataFrame):
    """PCK of the four DINOv2 variants per benchmark column: paper vs ours."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = comparison.assign(column=comparison["dataset"] + " @" + comparison["alpha"].map("{:.2f}".format))
    rows = rows.melt(id_vars=["setting", "column"], value_vars=["paper", "reproduced"], var_name="source",
                     value_name="PCK")
    grid = sns.catplot(data=rows, x="setting", y="PCK", hue="source", col="column", col_wrap=5, kind="bar",
                       height=2.4, aspect=1.1, palette=["#8c8c8c", "#2f6fdf"])
    grid.set_titles("{col_name}")
    grid.set_axis_labels("", "PCK (%)")
    plt.close(grid.figure)
    return grid.figure


def glue_table5(comparison: pd.DataFrame) -> None:
    """Glue Fuse's and DINOv2's headline cells of Table 5."""
    for _, row in comparison[comparison["setting"].isin(["Fuse", "DINOv2"])].iterrows():
        key = f"table5_{row['setting'].lower()}_{row['dataset'].replace('/', '_').replace('-', '').replace('.', '')}"
        glue_value(f"{key}_{int(round(row['alpha'] * 100)):02d}", row["reproduced"])
