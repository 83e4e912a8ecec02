"""Table 5 (SPair-71k, PF-Pascal, TSS) and Table 8 (CUB-200) on the smoke fixtures."""
import numpy as np
import pandas as pd
import pytest
import torch

from sdfuse import tables
from sdfuse.evaluation.pair_features import Method
from sdfuse.evaluation.tss import reference_form
from sdfuse.profiles.runs import resolve
from sdfuse.protocol.matching import dense_nearest
from sdfuse.tables import paper


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


def _plain_aggregates(records, alpha):
    """The four aggregates computed with plain pandas on keypoint records, one row per table row."""
    keys = ["dataset", "setting", "method"]
    frame = records.assign(hit=records["error"] < alpha * records["threshold"])
    per_category = frame.groupby(keys + ["category"])["hit"].mean()
    pairs = frame.groupby(keys + ["category"])["pair"].nunique()
    weighted = (per_category * pairs).groupby(level=keys).sum() / pairs.groupby(level=keys).sum()
    return 100 * pd.DataFrame({"category_mean": per_category.groupby(level=keys).mean(), "pair_weighted": weighted,
                               "keypoint_pooled": frame.groupby(keys)["hit"].mean(),
                               "per_image": frame.groupby(keys + ["pair"])["hit"].mean().groupby(level=keys).mean()})


def test_records_written_next_to_the_csv_recompute_the_table(run, table5, tmp_path):
    from dataclasses import replace

    from sdfuse.book import pages
    from sdfuse.protocol.metrics import AGGREGATES, table_aggregates
    from sdfuse.evaluation.records import read_records, records_path

    path = pages.save_results(table5, replace(run, results_dir=tmp_path), "table5")
    first = records_path(path, "keypoints").read_bytes()
    pages.save_results(table5, replace(run, results_dir=tmp_path), "table5")
    assert records_path(path, "keypoints").read_bytes() == first    # same data, same bytes
    keypoints = read_records(records_path(path, "keypoints"))
    assert set(keypoints["dataset"]) == {"SPair-71k", "PF-Pascal"}
    saved = pd.read_csv(path)
    for dataset, alphas in (("SPair-71k", (0.01, 0.05, 0.10)), ("PF-Pascal", (0.05, 0.10, 0.15))):
        for alpha in alphas:
            rows = saved[(saved["dataset"] == dataset) & np.isclose(saved["alpha"], alpha) & (saved["category"] == "all")]
            want = rows.pivot_table(index=["dataset", "setting", "method"], columns="aggregate", values="value")
            part = keypoints[keypoints["dataset"] == dataset]
            plain = _plain_aggregates(part, alpha).reindex(want.index)
            library = table_aggregates(part, alpha).reindex(want.index)
            for name in AGGREGATES:
                np.testing.assert_allclose(plain[name], want[name], rtol=1e-12, err_msg=f"{dataset} {alpha} {name}")
                np.testing.assert_allclose(library[name], want[name], rtol=1e-12, err_msg=f"{dataset} {alpha} {name}")
    samples = read_records(records_path(path, "tss_samples"))
    assert set(samples["form"]) == {"paper", "reference", "raw_l2"} and set(samples["direction"]) == {"12", "21"}
    means = samples.groupby(["method", "form", "alpha", "subset"])["value"].mean()
    tss = saved[saved["aggregate"] == "per_image_mean"]
    for row in tss.itertuples():
        assert row.value == pytest.approx(means[(row.setting, row.form, row.alpha, row.dataset.removeprefix("TSS/"))])


def test_every_reproduced_value_has_an_interval_around_it(table5):
    assert table5[["ci_low", "ci_high"]].notna().all().all()
    assert (table5["ci_low"] <= table5["value"] + 1e-9).all() and (table5["value"] <= table5["ci_high"] + 1e-9).all()
