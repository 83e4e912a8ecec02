"""PCK: strict threshold, visibility, and the four aggregates on a hand-made example (PROTOCOL §7.1)."""
import numpy as np
import pandas as pd
import pytest

from sdfuse.data.datasets import Pair
from sdfuse.protocol.metrics import aggregates, correct, pck_table, per_category


def test_threshold_is_strict():
    assert correct([0.99, 1.0, 1.01], [10, 10, 10], 0.1).tolist() == [True, False, False]


def _records(hits_per_pair):
    rows = []
    for pair, (category, hits) in enumerate(hits_per_pair):
        for hit in hits:
            rows.append({"category": category, "pair": pair, "error": 0.5 if hit else 5.0, "threshold": 10.0})
    return pd.DataFrame(rows)


def test_four_aggregates_on_two_categories():
    # A: pair 0 has 1 of 2 correct, pair 1 has 4 of 4; B: pair 2 has 0 of 2.
    records = _records([("A", [1, 0]), ("A", [1, 1, 1, 1]), ("B", [0, 0])])
    assert per_category(records, 0.1).round(4).to_dict() == {"A": round(500 / 6, 4), "B": 0.0}
    got = aggregates(records, 0.1)
    assert got["category_mean"] == pytest.approx((500 / 6 + 0) / 2)
    assert got["pair_weighted"] == pytest.approx((500 / 6 * 2 + 0) / 3)
    assert got["keypoint_pooled"] == pytest.approx(100 * 5 / 8)
    assert got["per_image"] == pytest.approx(100 * (0.5 + 1 + 0) / 3)


def test_pck_table_shape():
    records = _records([("A", [1, 0]), ("B", [0, 1])])
    table = pck_table(records, alphas=(0.01, 0.1))
    assert len(table) == 2 * (4 + 2)
    assert set(table["aggregate"]) == {"category_mean", "pair_weighted", "keypoint_pooled", "per_image", "per_category"}
    assert table.query("alpha == 0.01 and category == 'all'")["value"].tolist() == [0.0] * 4


def test_invisible_keypoints_are_excluded():
    pair = Pair("p", "cat", None, None, (100, 50), (50, 100), src_kps=np.array([[10, 10], [20, 20], [30, 30.]]),
                trg_kps=np.array([[1, 1], [2, 2], [3, 3.]]), visible=np.array([True, False, True]), threshold=40)
    src, trg, thr = pair.in_frame(840)
    assert src.shape == (2, 2) and np.allclose(src[1], [30 * 8.4, 30 * 8.4 + 210])
    assert np.allclose(trg[1], [3 * 8.4 + 210, 3 * 8.4])
    assert thr == pytest.approx(40 * 8.4)


def test_table_aggregates_gives_each_row_its_four_aggregates():
    from sdfuse.protocol.metrics import table_aggregates

    first = _records([("A", [1, 0]), ("A", [1, 1, 1, 1]), ("B", [0, 0])]).assign(dataset="spair", setting="s", method="Fuse")
    second = _records([("A", [0, 0]), ("B", [1, 1])]).assign(dataset="spair", setting="s", method="SD")
    table = table_aggregates(pd.concat([first, second]), 0.1)
    assert list(table.columns) == ["category_mean", "pair_weighted", "keypoint_pooled", "per_image"]
    assert table.index.names == ["dataset", "setting", "method"]
    assert table.loc[("spair", "s", "Fuse")].tolist() == pytest.approx(   # the case worked out above
        [(500 / 6 + 0) / 2, (500 / 6 * 2 + 0) / 3, 100 * 5 / 8, 100 * (0.5 + 1 + 0) / 3])
    assert table.loc[("spair", "s", "SD")].tolist() == pytest.approx([50.0, 50.0, 50.0, 50.0])  # 0 of 2, then 2 of 2
    by_method = table_aggregates(pd.concat([second, first]), 0.1, by=("method",))  # rows in the records' order
    assert by_method.index.tolist() == [("SD",), ("Fuse",)] and by_method.index.names == ["method"]
