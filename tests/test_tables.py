"""Tables 2, 3, 6/7, Fig. 2 and the α sweep on the smoke profile: rows, invariants, known answers (their values
against geometry: tests/test_oracle.py)."""
import numpy as np
import pandas as pd
import pytest
import torch

from sdfuse import tables
from sdfuse.evaluation.keypoints import evaluate
from sdfuse.evaluation.pair_features import Method
from sdfuse.profiles.runs import resolve
from sdfuse.protocol import outcomes
from sdfuse.tables import paper
from sdfuse.tables.common import spair_pck


@pytest.fixture(scope="module")
def run(smoke_root, tmp_path_factory):
    return resolve("smoke", cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def _headline(table, aggregate="category_mean"):
    rows = table[(table["aggregate"] == aggregate) & (table["category"] == "all")]
    return rows.set_index(["setting", "method", "alpha"])["value"]


def test_table2_rows(run):
    table = tables.table2(run)
    values = _headline(table)
    assert set(values.index.get_level_values("setting")) == {"PCA 384", "PCA 256", "PCA 128"}
    assert len(values) == 3 * 2 * 3 and np.isfinite(values).all()
    assert table.groupby("setting")["pca_dim"].first().to_dict() == {"PCA 384": 24, "PCA 256": 16, "PCA 128": 8}


def test_table3_rows(run):
    values = _headline(tables.table3(run))
    assert set(values.index.get_level_values("setting")) == {
        "concat_normalized", "concat", "sum", "sum_normalized", "sum_reference", "sum_normalized_reference"}
    comparison = paper.table3().merge(values.rename("ours").reset_index(), on=["setting", "method", "alpha"])
    assert len(comparison) == 12


def test_reference_sum_bug_switches_to_concat_after_each_categorys_first_pair(run):
    """The reference re-reads the mode per category: the first pair of *every* category is summed (AMBIG-8)."""
    drawn = run.spair_pairs()
    pairs = drawn[:2] + drawn[20:22]                 # two pairs of each of the first two categories
    assert [p.category for p in pairs] == ["portrait", "portrait", "present", "present"]
    methods = {name: Method("Fuse", pca_dim=run.pca_dim, fusion=name) for name in ("sum", "concat", "sum_reference")}
    records = evaluate(pairs, methods, run.grid, run.sd_features, run.dino_features, progress=False)
    errors = {name: group.set_index(["pair", "kp"])["error"] for name, group in records.groupby("method")}
    for first, later in ((0, 1), (2, 3)):
        assert errors["sum_reference"].loc[[first]].equals(errors["sum"].loc[[first]])
        assert errors["sum_reference"].loc[[later]].equals(errors["concat"].loc[[later]])
    assert not errors["sum"].loc[[2]].equals(errors["concat"].loc[[2]])      # so the first pair of 'present' tells


def test_alpha_sweep_rows(run):
    table = tables.alpha_sweep(run, alphas=(0.0, 0.5, 1.0))
    curve = _headline(table)
    assert set(curve.index.get_level_values("setting")) == {"α=0.00", "α=0.50", "α=1.00"}
    assert sorted(table["fusion_alpha"].unique()) == [0.0, 0.5, 1.0]


def test_paper_table6_gives_fig2():
    got = outcomes.conditional_probabilities(paper.TABLE6_RATIOS)
    stated = paper.FIG2_PROBABILITIES
    assert got["P(Fuse ✓ | SD ✗, DINO ✗)"] == pytest.approx(stated["P(Fuse ✓ | SD ✗, DINO ✗)"], abs=0.1)  # 9.93 → "10.0"
    for key in list(stated)[1:]:
        assert round(got[key], 1) == stated[key]
    assert sum(paper.TABLE6_RATIOS.values()) == pytest.approx(99.95)


def test_relative_distance_known_answer():
    distances = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 4.0]], dtype=torch.float64)
    assert outcomes.relative_distance(distances, np.array([1, 0])).tolist() == [0.5, 0.0]


def test_outcome_analysis(run):
    records = tables.outcomes(run)
    classes = outcomes.outcome_classes(records)
    assert set(classes) <= set(outcomes.OUTCOME_CLASSES)
    ratios = outcomes.outcome_ratios(records, by="category")
    assert list(ratios.columns) == ["all", "portrait", "present", "terrain"]
    assert np.allclose(ratios.sum(), 100)
    for name in ("SD", "DINO", "Fuse"):
        assert records[f"rel_{name}_gt"].between(0, 1).all()
    table7 = outcomes.relative_distance_table(records)
    assert list(table7.index) == ["011", "101", "Average"]
    in_101 = classes == "101"
    assert table7.loc["Average", ("SD", "correct match")] == pytest.approx(records["rel_SD_gt"].mean())
    assert table7.loc["101", ("DINO", "false match")] == pytest.approx(
        records.loc[in_101, "rel_DINO_at_SD"].mean() if in_101.any() else np.nan, nan_ok=True)
    # per-keypoint successes agree with the keypoint-pooled PCK of the same matchers
    pck = spair_pck(run, {"f": ("x", Method("Fuse", pca_dim=run.pca_dim))})
    pooled = pck.query("aggregate == 'keypoint_pooled' and alpha == 0.1")["value"].item()
    assert 100 * classes.str[2].astype(int).mean() == pytest.approx(pooled)
