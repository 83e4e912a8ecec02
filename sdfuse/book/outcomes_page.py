"""The outcome-analysis page (supp. Tables 6, 7, Fig. 2; notebook ``06_outcomes``): its results files, glue,
views beside the paper and figures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..profiles.runs import Run
from .figures import error_bars
from .pages import glue_value, interval_text, save_results
from .status import NOT_COMPARABLE


def save_outcomes(results: dict[str, pd.DataFrame], records: pd.DataFrame, run: Run) -> None:
    """Write Table 6 (shares per category), Fig. 2 (probabilities) and Table 7 (relative distances) of
    :func:`sdfuse.protocol.outcomes.outcome_tables` as tidy CSVs, the keypoint records beside Table 6."""
    from ..evaluation.records import attach

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
           yerr=error_bars(ours), error_kw={"ecolor": "black", "capsize": 2, "elinewidth": 0.8})
    ax.set_xticks(positions, [n.replace("P(", "").replace(")", "") for n in names], fontsize=8)
    ax.set_ylabel("probability (%)")
    ax.legend()
    plt.close(fig)
    return fig


def relative_distance_view(table7: pd.DataFrame, paper_table: dict):
    """Table 7 beside the paper ("–" where the paper has no value), with this run's 95 % intervals."""
    from ..protocol.outcomes import DISTANCE_COLUMNS

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
