"""Table 5 (SPair-71k, PF-Pascal, TSS) and Table 8 (CUB-200) on the smoke fixtures."""
import numpy as np
import pytest
import torch

from sdfuse import paper, tables
from sdfuse.dense import reference_form
from sdfuse.evaluation import Method
from sdfuse.matching import dense_nearest
from sdfuse.profiles import resolve


@pytest.fixture(scope="module")
def run(smoke_root, tmp_path_factory):
    return resolve("smoke", cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module")
def table5(run):
    return tables.table5(run)


def test_table5_covers_every_column_of_the_paper(table5):
    headline = tables.table5_headline(table5, form="paper")
    cells = headline.merge(paper.table5(), on=["setting", "dataset", "alpha"], suffixes=("", "_paper"))
    assert len(cells) == len(paper.table5()) == 40
    assert np.isfinite(cells["value"]).all() and cells["value"].between(0, 100).all()
    reference = tables.table5_headline(table5, form="reference")
    assert set(reference["dataset"]) == {"TSS/FG3DCar", "TSS/JODS", "TSS/PASCAL", "TSS/Avg."}


def test_tss_average_is_weighted_by_pair_folders(table5):
    rows = table5[(table5["form"] == "paper") & (table5["alpha"] == 0.05) & (table5["setting"] == "Fuse")]
    value = rows.set_index("dataset")["value"]
    counts = {"FG3DCar": 2, "JODS": 1, "PASCAL": 1}                 # the smoke fixture's pair folders
    want = sum(value[f"TSS/{k}"] * n for k, n in counts.items()) / sum(counts.values())
    assert value["TSS/Avg."] == pytest.approx(want)


def test_table5_fuse_on_spair_equals_table1_default(run, table5):
    t1 = tables.table1(run)
    fuse = t1.query("setting == '2+5+8' and method == 'Fuse' and aggregate == 'category_mean' and category == 'all'")
    ours = table5.query("setting == 'Fuse' and dataset == 'SPair-71k' and aggregate == 'category_mean' and category == 'all'")
    assert ours["value"].tolist() == pytest.approx(fuse["value"].tolist())


def test_pf_pascal_uses_its_thresholds(table5):
    rows = table5[(table5["dataset"] == "PF-Pascal") & (table5["aggregate"] == "category_mean")]
    assert sorted(rows["alpha"].unique()) == [0.05, 0.10, 0.15]


def test_reference_form_and_dense_metrics():
    assert reference_form(Method("Fuse")).fusion == "concat"
    assert reference_form(Method("DINO")) == Method("DINO")
    src = torch.tensor([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0]])
    trg = torch.tensor([[9.0, 0.5], [0.1, 2.0]])
    assert dense_nearest(src, trg, "cosine").tolist() == [0, 2]      # direction only: first of the ties
    assert dense_nearest(src, trg, "l2").tolist() == [1, 2]          # magnitude matters
    assert dense_nearest(src, trg, "l2", chunk=1).tolist() == [1, 2]


def test_table8_rows(run):
    table = tables.table8(run)
    pooled = table[(table["aggregate"] == "keypoint_pooled") & (table["category"] == "all")]
    assert set(pooled["setting"]) == {"DINOv2", "SD", "Fuse α=0.5", "Fuse α=0.8"}
    assert sorted(pooled["alpha"].unique()) == [0.01, 0.05, 0.10]
    assert np.isfinite(pooled["value"]).all()
    assert set(table.loc[table["aggregate"] == "per_category", "category"]) == {
        "001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"}
