"""Verdicts: the paper's value against the reproduced value's bootstrap interval, on the status page
and in the comparison tables."""
import numpy as np
import pandas as pd
import pytest

from sdfuse.book import pages
from sdfuse.book.status import status_table, verdict
from sdfuse.tables import paper


def test_verdict_is_whether_the_paper_lies_in_the_interval():
    assert verdict("paper", 62.2, 61.0, 63.0) == "reproduced"
    assert verdict("paper", 62.2, 62.3, 64.0) == "differs"
    assert verdict("paper", 62.2, 62.24, 64.0, rounding=0.05) == "reproduced"   # 62.2 may stand for 62.24
    assert verdict("paper", 62.2, 62.26, 64.0, rounding=0.05) == "differs"
    assert verdict("paper", 62.2, np.nan, np.nan).startswith("not judged: no interval")
    assert verdict("smoke", 62.2, 61.0, 63.0) == "smoke run: not comparable"
    assert verdict("rehearsal", 62.2, 61.0, 63.0) == "rehearsal run: not comparable"


def _table1_results(folder, with_interval=True):
    rows = paper.table1().assign(aggregate="category_mean", category="all", dataset="SPair-71k")
    rows["value"] = rows["value"] + 3.0                             # every reproduced value 3 points above
    rows["ci_low"], rows["ci_high"] = rows["value"] - 1.0, rows["value"] + 1.0
    fuse = (rows["setting"] == "2+5+8") & (rows["method"] == "Fuse")
    rows.loc[fuse, "ci_low"] = rows.loc[fuse, "value"] - 4.0        # wide enough to hold the paper's value
    if not with_interval:
        rows = rows.drop(columns=["ci_low", "ci_high"])
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / "table1.csv", index=False)


def test_status_judges_paper_profile_cells_by_interval(tmp_path):
    _table1_results(tmp_path / "paper")
    status = status_table(tmp_path)
    table1 = status[status["table"] == "Table 1: UNet layers"].set_index("cell")
    fuse = table1.loc["2+5+8 · Fuse · PCK@0.10"]
    assert fuse["verdict"] == "reproduced" and fuse["delta"] == pytest.approx(3.0)
    assert fuse["ci_low"] == pytest.approx(62.2 + 3 - 4) and fuse["ci_high"] == pytest.approx(62.2 + 3 + 1)
    others = table1.drop(index=[c for c in table1.index if c.startswith("2+5+8 · Fuse")])
    assert (others["verdict"] == "differs").all() and len(others) == 39
    assert status.loc[status["table"] != "Table 1: UNet layers", "verdict"].str.startswith("not run").all()


def test_random_weight_profiles_are_listed_before_paper_and_never_judged(tmp_path):
    from sdfuse.book.status import profiles_present

    for profile in ("paper", "rehearsal", "smoke"):
        _table1_results(tmp_path / profile)                  # identical numbers: only the profile differs
    assert profiles_present(tmp_path) == ["smoke", "rehearsal", "paper"]
    table1 = status_table(tmp_path).query("table == 'Table 1: UNet layers'")
    verdicts = table1.groupby("profile")["verdict"].agg(set).to_dict()
    assert verdicts["smoke"] == {"smoke run: not comparable"}
    assert verdicts["rehearsal"] == {"rehearsal run: not comparable"}
    assert verdicts["paper"] == {"reproduced", "differs"}


def test_status_does_not_judge_values_without_interval(tmp_path):
    _table1_results(tmp_path / "paper", with_interval=False)
    table1 = status_table(tmp_path).query("table == 'Table 1: UNet layers'")
    assert table1["verdict"].str.startswith("not judged: no interval").all()
    assert table1["reproduced"].notna().all()


def test_compare_uses_the_interval():
    ours = pd.DataFrame({"setting": ["a", "b", "c"], "method": "Fuse", "alpha": 0.1, "aggregate": "category_mean",
                         "category": "all", "value": [50.0, 50.0, 50.0], "ci_low": [45.0, 48.0, np.nan],
                         "ci_high": [55.0, 52.0, np.nan]})
    theirs = pd.DataFrame({"setting": ["a", "b", "c", "d"], "method": "Fuse", "alpha": 0.1,
                           "value": [54.0, 54.0, 50.0, 50.0]})
    merged = pages.compare(ours, theirs, aggregate="category_mean", profile="paper").set_index("setting")
    assert merged["verdict"].to_dict() == {"a": "reproduced", "b": "differs",
                                          "c": "not judged: no interval in the results (rerun the table)",
                                          "d": "not run: not computed by this run"}
    assert merged.loc["a", ["ci_low", "ci_high"]].tolist() == [45.0, 55.0]
    smoke = pages.compare(ours, theirs, aggregate="category_mean", profile="smoke")
    assert set(smoke["verdict"][:3]) == {"smoke run: not comparable"}
    view = pages.comparison_view(merged.reset_index(), profile="paper").to_html()
    assert "[45.0, 55.0]" in view and "95 % CI" in view
