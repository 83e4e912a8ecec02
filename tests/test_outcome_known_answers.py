"""Known answers, worked out by hand, for the outcome analysis (supp. Table 6 and Fig. 2: PROTOCOL §10.1-10.3),
the per-category PCK frame (§7.1) and the dense matcher (§6 cosine, §8 L2).

Every expected value is written from the construction (a keypoint's error against its threshold
decides its bit; class counts give the probabilities as fractions; 1-D descriptors make the
nearest neighbour obvious), never read back from the code under test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sdfuse.protocol.matching import dense_nearest
from sdfuse.protocol.metrics import per_category
from sdfuse.protocol.outcomes import conditional_probabilities, outcome_classes, outcome_ratios

THRESHOLD = 100.0
"""Every keypoint's threshold length: PCK@0.10 needs error < 10, PCK@0.05 error < 5 (strict)."""
ERROR = {"1": 3.0, "0": 60.0, "h": 7.0, "=": 10.0, "w": 20.0}
"""Error of one matcher for one bit: 1 hit at 0.05 and 0.10; 0 miss at both; h hit at 0.10 but not
0.05; = exactly 0.10 · threshold (a miss: strict); w a miss at 0.10 that a looser α of 1.1 would count."""


def _records(keypoints, index=None) -> pd.DataFrame:
    """Outcome records of (category, pair, code) keypoints; code = one ERROR key per SD, DINO, Fuse."""
    rows = [{"category": category, "pair": pair, "threshold": THRESHOLD,
             **{f"error_{m}": ERROR[bit] for m, bit in zip(("SD", "DINO", "Fuse"), code)},
             "rel_SD_gt": 0.0, "rel_SD_at_DINO": 0.0, "rel_DINO_gt": 0.0, "rel_DINO_at_SD": 0.0}
            for category, pair, code in keypoints]
    return pd.DataFrame(rows, index=index)


def test_outcome_classes_bits_default_alpha_index_and_name():
    # a filtered frame: its index is not 0..n-1, and the classes must stay aligned with it
    codes = ["111", "011", "=w1", "h0h", "w=w", "001", "110", "000"]
    records = _records([("cat", 0, c) for c in codes], index=[40, 41, 7, 9, 13, 2, 5, 8])
    classes = outcome_classes(records)                   # the default α is PCK@0.10 (§10.1)
    assert classes.tolist() == ["111", "011", "001", "101", "000", "001", "110", "000"]
    assert classes.index.tolist() == [40, 41, 7, 9, 13, 2, 5, 8]
    assert classes.name == "outcome"
    assert outcome_classes(records, alpha=0.05).tolist() == ["111", "011", "001", "000", "000", "001", "110", "000"]


def _two_category_records() -> pd.DataFrame:
    # "aeroplane" sorts before "all": the pooled column must still come first
    return _records([("cat", 0, "111"), ("cat", 0, "h01"), ("cat", 1, "000"), ("cat", 1, "111"),
                     ("aeroplane", 2, "101"), ("aeroplane", 2, "011"), ("aeroplane", 3, "111"),
                     ("aeroplane", 3, "1h1"), ("aeroplane", 3, "000"), ("aeroplane", 3, "111")])


CLASSES = ["000", "001", "010", "011", "100", "101", "110", "111"]


def test_outcome_ratios_pooled_and_per_category_shares():
    records = _two_category_records()
    # at 0.10: cat 111, 101, 000, 111; aeroplane 101, 011, 111, 111, 000, 111
    cat = {"000": 1, "101": 1, "111": 2}
    aeroplane = {"000": 1, "011": 1, "101": 1, "111": 3}
    pooled = {k: cat.get(k, 0) + aeroplane.get(k, 0) for k in CLASSES}
    expected = pd.DataFrame({"all": [100 * pooled[k] / 10 for k in CLASSES],
                             "aeroplane": [100 * aeroplane.get(k, 0) / 6 for k in CLASSES],
                             "cat": [100 * cat.get(k, 0) / 4 for k in CLASSES]},
                            index=pd.Index(CLASSES, name="outcome"))
    got = outcome_ratios(records, by="category")
    assert list(got.columns) == ["all", "aeroplane", "cat"] and got.columns.name is None
    assert list(got.index) == CLASSES
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)

    alone = outcome_ratios(records)                      # no split: the pooled column only
    assert list(alone.columns) == ["all"] and list(alone.index) == CLASSES
    np.testing.assert_allclose(alone["all"].to_numpy(), expected["all"].to_numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="category only"):
        outcome_ratios(records, by="pair")


def test_outcome_ratios_follow_alpha():
    # at 0.05 the two "h" keypoints miss: cat's 101 becomes 001, aeroplane's 111 becomes 101
    got = outcome_ratios(_two_category_records(), alpha=0.05)["all"]
    pooled = {"000": 2, "001": 1, "011": 1, "101": 2, "111": 4}
    np.testing.assert_allclose(got.to_numpy(), [100 * pooled.get(k, 0) / 10 for k in CLASSES], rtol=0, atol=1e-12)


COUNTS = {"000": 8, "001": 2, "010": 3, "011": 1, "100": 3, "101": 7, "110": 1, "111": 9}   # 34 keypoints
FIG2 = {"P(Fuse ✓ | SD ✗, DINO ✗)": 100 * 2 / (8 + 2),
        "P(Fuse ✓ | SD ✗, DINO ✓)": 100 * 1 / (3 + 1),
        "P(Fuse ✓ | SD ✓, DINO ✗)": 100 * 7 / (3 + 7),
        "P(Fuse ✗ | SD ✓, DINO ✓)": 100 * 1 / (1 + 9),
        "P(SD ✓)": 100 * (3 + 7 + 1 + 9) / 34,
        "P(DINO ✓)": 100 * (3 + 1 + 1 + 9) / 34,
        "P(Fuse ✓)": 100 * (2 + 1 + 7 + 9) / 34,
        "P(SD ✓ or DINO ✓)": 100 * (3 + 1 + 3 + 7 + 1 + 9) / 34}
"""Fig. 2's quantities from COUNTS by hand (PROTOCOL §10.3): 20, 25, 70, 10 and 58.8, 41.2, 55.9, 70.6."""


def test_conditional_probabilities_from_class_counts():
    got = conditional_probabilities(COUNTS)
    assert list(got) == list(FIG2)
    for name, value in FIG2.items():
        assert isinstance(got[name], float) and got[name] == pytest.approx(value, rel=1e-12), name
    # shares in % give the same probabilities as counts
    shares = conditional_probabilities({k: 100 * v / 34 for k, v in COUNTS.items()})
    assert shares == pytest.approx(FIG2, rel=1e-12)


def test_conditional_probabilities_of_small_integer_count_arrays():
    # bootstrap replicates of the counts as compact int16 arrays: 100 · 900 does not fit in int16,
    # so the ratios must be taken in float64
    scaled = {k: np.array([v, 100 * v], dtype=np.int16) for k, v in COUNTS.items()}
    got = conditional_probabilities(scaled)
    for name, value in FIG2.items():
        np.testing.assert_allclose(got[name], [value, value], rtol=1e-12, err_msg=name)


def test_per_category_is_indexed_by_category():
    records = pd.DataFrame({"category": ["dog", "dog", "bus"], "pair": [0, 0, 1],
                            "error": [1.0, 50.0, 1.0], "threshold": [100.0] * 3})
    got = per_category(records, 0.1)
    assert got.index.name == "category"
    assert got.reset_index().to_dict("list") == {"category": ["bus", "dog"], 0: [100.0, 50.0]}


def test_dense_nearest_l2_on_a_line():
    # 1-D descriptors: the L2 nearest source of 1.8 is 1 (|0.8| < |1.2|) although 3 has the larger
    # dot product; 2.2 is nearest 3; 0 nearest 1; 5 nearest 3
    src = torch.tensor([[1.0], [3.0]])
    trg = torch.tensor([[1.8], [2.2], [0.0], [5.0]])
    assert dense_nearest(src, trg, metric="l2").tolist() == [0, 1, 0, 1]


def test_dense_nearest_l2_agrees_with_brute_force_distances():
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(30, 5, generator=gen) * torch.linspace(0.2, 3.0, 30)[:, None]   # unequal norms
    trg = torch.randn(40, 5, generator=gen) * 2
    s, t = src.double().numpy(), trg.double().numpy()
    brute = np.linalg.norm(t[:, None, :] - s[None, :, :], axis=-1).argmin(axis=1)
    assert dense_nearest(src, trg, metric="l2", chunk=7).tolist() == brute.tolist()


def test_dense_nearest_defaults_to_cosine():
    # t = (1, 0.8): cosine prefers the direction (1, 1) of the far source (5, 5); L2 the near (1, 0)
    src = torch.tensor([[1.0, 0.0], [5.0, 5.0]])
    trg = torch.tensor([[1.0, 0.8], [1.0, 0.1]])
    assert dense_nearest(src, trg).tolist() == [1, 0]
    assert dense_nearest(src, trg, metric="l2").tolist() == [0, 0]



def test_relative_distance_table_means_by_scenario_by_hand():
    from sdfuse.protocol.outcomes import relative_distance_table

    codes = [("cat", 0, "011"), ("cat", 0, "011"), ("cat", 1, "101"), ("cat", 1, "111")]
    records = _records(codes)
    distances = {"rel_SD_gt": [0.2, 0.4, 0.1, 0.0], "rel_SD_at_DINO": [0.6, 0.8, 0.3, 0.1],
                 "rel_DINO_gt": [0.0, 0.2, 0.5, 0.1], "rel_DINO_at_SD": [0.1, 0.3, 0.9, 0.3]}
    for column, values in distances.items():
        records[column] = values
    table = relative_distance_table(records)
    assert table.index.tolist() == ["011", "101", "Average"] and table.index.name == "scenario"
    assert table.columns.tolist() == [("SD", "correct match"), ("SD", "false match"),
                                      ("DINO", "correct match"), ("DINO", "false match")]
    expected = [[0.3, 0.7, 0.1, 0.2],                   # class 011: keypoints 0 and 1
                [0.1, 0.3, 0.5, 0.9],                   # class 101: keypoint 2
                [0.175, 0.45, 0.2, 0.4]]                # every keypoint
    assert table.to_numpy() == pytest.approx(np.array(expected))


def test_relative_distance_on_a_span_below_one():
    from sdfuse.protocol.outcomes import relative_distance

    distances = torch.tensor([[0.2, 0.45, 0.7], [3.0, 3.0, 3.0]], dtype=torch.float64)
    got = relative_distance(distances, np.array([1, 2]))          # (0.45 − 0.2) / 0.5; a flat row gives 0
    assert got.tolist() == pytest.approx([0.5, 0.0])


def test_outcome_tables_warn_nothing_for_an_empty_scenario_and_follow_pair_order():
    import warnings

    from sdfuse.protocol.outcomes import outcome_tables

    # pair ids out of order, and no keypoint of class 011 or 101: Table 7's means over them are undefined
    records = _records([("zebra", 5, "111"), ("zebra", 5, "000"), ("ant", 2, "111"), ("ant", 2, "111")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables = outcome_tables(records, resamples=0)
    shares = tables["table6"].set_index(["category", "outcome"])["value"]
    assert shares[("ant", "111")] == pytest.approx(100.0)          # pair 2: both keypoints 111
    assert shares[("zebra", "111")] == pytest.approx(50.0) and shares[("zebra", "000")] == pytest.approx(50.0)


def test_relative_distance_table_uses_its_alpha():
    from sdfuse.protocol.outcomes import relative_distance_table

    # code "h" is a hit at 0.10 only: at 0.10 the keypoint is class 011, at 0.05 class 000
    records = _records([("cat", 0, "0hh"), ("cat", 0, "111")])
    records["rel_SD_gt"] = [0.4, 0.0]
    assert relative_distance_table(records, alpha=0.10).loc["011", ("SD", "correct match")] == pytest.approx(0.4)
    assert np.isnan(relative_distance_table(records, alpha=0.05).loc["011", ("SD", "correct match")])
