"""Known answers of the table code: geometry on odd inputs (a grayscale image, compact integer cells), PCK and
outcome tables on hand-made records whose rows are out of pair order, group order and layouts, the
bootstrap's level and seed (PROTOCOL §1, §6, §7.1, §10).

Every expected value is worked out by hand in the comments, or re-derived in the test by a naive loop.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdfuse.protocol.geometry import patch_index, patch_to_pixel, pixel_to_patch, resize_pad
from sdfuse.protocol.metrics import aggregates, pck_table, per_category
from sdfuse.protocol.outcomes import conditional_probabilities, outcome_tables, relative_distance_table

# --- geometry (PROTOCOL §1.1, §6) -------------------------------------------------------------------


def test_resize_pad_turns_a_grayscale_image_into_a_padded_rgb_canvas():
    """§1.1: the input is converted to RGB; W×H = 4×2, T = 8: content 8×round(8·2/4) = 8×4, top = (8−4)//2 = 2."""
    image = Image.new("L", (4, 2), color=100)
    out = resize_pad(image, 8)
    assert out.mode == "RGB" and out.size == (8, 8)
    canvas = np.asarray(out)
    assert canvas.shape == (8, 8, 3)
    assert (canvas[2:6] == 100).all()                       # a constant image stays constant under LANCZOS
    assert (canvas[:2] == 0).all() and (canvas[6:] == 0).all()


def test_resize_pad_centres_a_tall_image_between_black_columns():
    """§1.1: W×H = 2×4, T = 8: content round(8·2/4)×8 = 4×8, left = (8−4)//2 = 2, right 8 − 4 − 2 = 2."""
    canvas = np.asarray(resize_pad(Image.new("RGB", (2, 4), color=(90, 120, 150)), 8))
    assert canvas.shape == (8, 8, 3)
    assert (canvas[:, 2:6] == (90, 120, 150)).all()
    assert (canvas[:, :2] == 0).all() and (canvas[:, 6:] == 0).all()


def test_pixel_to_patch_gives_integer_cells_that_index_a_grid():
    """§6: x_p = ⌊x/14⌋ on the 840 frame: (13.9, 20) → (0, 1), (839.5, 0.2) → (59, 0); the cells are integers."""
    cells = pixel_to_patch(np.array([[13.9, 20.0], [839.5, 0.2]]), 60, 840)
    assert np.issubdtype(cells.dtype, np.integer)
    assert cells.tolist() == [[0, 1], [59, 0]]
    grid = np.arange(60 * 60).reshape(60, 60)                # grid[row, col] = 60·row + col
    assert grid[cells[:, 1], cells[:, 0]].tolist() == [60, 59]


def test_patch_index_of_byte_cells_does_not_wrap():
    """§6: index = 60·y_p + x_p; cells held as uint8 (G = 60 fits a byte) still give the last token 60·59 + 59 = 3599."""
    cells = np.array([[59, 59], [3, 2]], dtype=np.uint8)
    assert patch_index(cells, 60).tolist() == [3599, 123]


def test_patch_index_of_whole_float_cells_is_an_integer_token_index():
    """§6: (col, row) = (2, 1) and (0, 3) on a 4×4 grid are tokens 4·1 + 2 = 6 and 4·3 + 0 = 12, usable as an index."""
    index = patch_index(np.array([[2.0, 1.0], [0.0, 3.0]]), 4)
    assert np.issubdtype(index.dtype, np.integer)
    assert (10 * np.arange(16))[index].tolist() == [60, 120]


def test_patch_to_pixel_of_byte_cells_does_not_wrap():
    """§6: the centre of cell 59 is 14·59 + 6.5 = 832.5 even when the cells are held as uint8 (14·59 > 255)."""
    assert patch_to_pixel(np.array([[59, 0]], dtype=np.uint8)).tolist() == [[832.5, 6.5]]


# --- PCK (PROTOCOL §7.1, AMBIG-9) -------------------------------------------------------------------


def _records(rows) -> pd.DataFrame:
    """(pair, category, hit) rows: a hit has error 0.5, a miss 5.0, against threshold 10 (α = 0.1 → bound 1)."""
    return pd.DataFrame([{"category": c, "pair": p, "error": 0.5 if hit else 5.0, "threshold": 10.0}
                         for p, c, hit in rows])


def test_per_category_pck_does_not_depend_on_the_records_row_order():
    """§7.1: pair 1 (B, 2 of 2 hits) listed before pair 0 (A, 0 of 2): PCK A = 0, B = 100, whatever the row order."""
    records = _records([(1, "B", 1), (0, "A", 0), (1, "B", 1), (0, "A", 0)])
    assert per_category(records, 0.1).to_dict() == {"A": 0.0, "B": 100.0}


def test_aggregates_do_not_depend_on_the_records_row_order():
    """AMBIG-9 by hand: A = pair 0 (1 of 3) and pair 2 (2 of 2); B = pair 1 (0 of 1), rows reversed.

    A pools 3 of 5 = 60 %, B 0 %: category mean 30, pair-weighted (60·2 + 0·1)/3 = 40,
    keypoint-pooled 3/6 = 50, per-image (1/3 + 0 + 1)/3 = 4/9.
    """
    rows = [(0, "A", 1), (0, "A", 0), (0, "A", 0), (1, "B", 0), (2, "A", 1), (2, "A", 1)]
    got = aggregates(_records(rows[::-1]), 0.1)
    assert got == pytest.approx({"category_mean": 30.0, "pair_weighted": 40.0, "keypoint_pooled": 50.0,
                                 "per_image": 100 * (1 / 3 + 0 + 1) / 3})


def test_pck_table_rows_keep_the_groups_order_of_appearance():
    """A table's rows come in the order its methods appear (SD before DINO), not sorted by name."""
    sd = _records([(0, "A", 1), (1, "A", 0)]).assign(method="SD")           # 1 of 2
    dino = _records([(0, "A", 1), (1, "A", 1)]).assign(method="DINO")       # 2 of 2
    table = pck_table(pd.concat([sd, dino], ignore_index=True), alphas=(0.1,), by=("method",), resamples=0)
    assert list(dict.fromkeys(table["method"])) == ["SD", "DINO"]
    pooled = table[table["aggregate"] == "keypoint_pooled"]
    assert pooled["method"].tolist() == ["SD", "DINO"] and pooled["value"].tolist() == [50.0, 100.0]


def test_pck_table_groups_on_different_pairs_each_get_their_own_categories():
    """Two methods on different pairs: SD on pairs 0 (A, 1 of 1) and 1 (B, 0 of 2); DINO on pair 0 only (A, 0 of 1)."""
    sd = _records([(0, "A", 1), (1, "B", 0), (1, "B", 0)]).assign(method="SD")
    dino = _records([(0, "A", 0)]).assign(method="DINO")
    table = pck_table(pd.concat([sd, dino], ignore_index=True), alphas=(0.1,), by=("method",), resamples=0)
    per_cat = table[table["aggregate"] == "per_category"]
    assert per_cat[["method", "category", "value"]].values.tolist() == [["SD", "A", 100.0], ["SD", "B", 0.0],
                                                                       ["DINO", "A", 0.0]]
    means = table[table["aggregate"] == "category_mean"].set_index("method")["value"]
    assert means.to_dict() == {"SD": 50.0, "DINO": 0.0}


def test_pck_table_intervals_follow_the_level():
    """Bootstrap by construction: category A has pair 0 (1 hit of 1) and pair 1 (1 miss of 1). A resample of two
    pairs gives 0, 50 or 100 % with chances 1/4, 1/2, 1/4, so the central 20 % of 1000 resamples is [50, 50]
    and the central 95 % is [0, 100]; every aggregate equals A's PCK here."""
    records = _records([(0, "A", 1), (1, "A", 0)])
    narrow = pck_table(records, alphas=(0.1,), resamples=1000, level=0.2)
    wide = pck_table(records, alphas=(0.1,), resamples=1000, level=0.95)
    assert len(narrow) == 5                                   # four aggregates and category A
    assert (narrow["value"] == 50.0).all()
    assert (narrow["ci_low"] == 50.0).all() and (narrow["ci_high"] == 50.0).all()
    assert (wide["ci_low"] == 0.0).all() and (wide["ci_high"] == 100.0).all()


# --- outcomes (PROTOCOL §10) ------------------------------------------------------------------------


def test_conditional_probabilities_of_scalar_counts_are_plain_floats():
    """§10.3: from scalar class counts every probability is a Python float (it serialises to JSON)."""
    counts = {"000": 1, "001": 1, "010": 2, "011": 1, "100": 1, "101": 1, "110": 0, "111": 1}   # 8 keypoints
    got = conditional_probabilities(counts)
    assert all(type(value) is float for value in got.values())
    assert json.loads(json.dumps(got))["P(SD ✓)"] == 37.5                # 100·(1 + 1 + 0 + 1)/8


def _outcome_records() -> pd.DataFrame:
    """Two categories, pairs with 1–3 keypoints; errors at threshold 10 decide SD/DINO/Fuse hits at α = 0.1."""
    rng = np.random.default_rng(11)
    rows = []
    layout = [("A", 1), ("A", 3), ("A", 2), ("A", 1), ("B", 2), ("B", 1), ("B", 3)]
    for pair, (category, n) in enumerate(layout):
        for _ in range(n):
            sd, dino, fuse = rng.integers(0, 2, size=3)
            rows.append({"category": category, "pair": pair, "threshold": 10.0,
                         "error_SD": 0.5 if sd else 5.0, "error_DINO": 0.5 if dino else 5.0,
                         "error_Fuse": 0.5 if fuse else 5.0,
                         "rel_SD_gt": rng.random(), "rel_SD_at_DINO": rng.random(),
                         "rel_DINO_gt": rng.random(), "rel_DINO_at_SD": rng.random()})
    return pd.DataFrame(rows)


def test_outcome_table7_intervals_resample_pairs_within_categories_with_the_given_seed():
    """§10: the Average row's interval of mean rel_SD_gt, re-derived by a naive loop over the documented draw
    (sdfuse.protocol.bootstrap: per category, sorted, one numpy default_rng(seed) matrix of n pairs drawn with
    replacement per resample), the mean over the drawn pairs' keypoints."""
    records = _outcome_records()
    seed, resamples = 7, 200
    rng = np.random.default_rng(seed)
    kps = np.zeros(resamples)
    total = np.zeros(resamples)
    for category in sorted(set(records["category"])):
        pairs = sorted(set(records.loc[records["category"] == category, "pair"]))
        draws = rng.integers(0, len(pairs), size=(resamples, len(pairs)), dtype=np.int64)
        for b in range(resamples):
            for d in draws[b]:
                rows = records[records["pair"] == pairs[d]]
                kps[b] += len(rows)
                total[b] += rows["rel_SD_gt"].sum()
    low, high = np.percentile(total / kps, [2.5, 97.5])
    table7 = outcome_tables(records, 0.1, resamples=resamples, seed=seed)["table7"]
    row = table7[(table7["scenario"] == "Average") & (table7["features"] == "SD") & (table7["match"] == "correct match")]
    assert row["value"].item() == pytest.approx(records["rel_SD_gt"].mean())
    assert row["ci_low"].item() == pytest.approx(low) and row["ci_high"].item() == pytest.approx(high)


def test_relative_distance_table_columns_are_sd_then_dino():
    """Supp. Table 7's columns: SD (correct, false match) then DINO (correct, false match); the Average row is the
    plain mean over all keypoints: (0.1 + 0.3)/2, (0.5 + 0.7)/2, (0.2 + 0.4)/2, (0.6 + 0.8)/2."""
    records = pd.DataFrame({"category": ["A", "A"], "pair": [0, 0], "threshold": [10.0, 10.0],
                            "error_SD": [0.5, 5.0], "error_DINO": [5.0, 0.5], "error_Fuse": [0.5, 0.5],
                            "rel_SD_gt": [0.1, 0.3], "rel_SD_at_DINO": [0.5, 0.7],
                            "rel_DINO_gt": [0.2, 0.4], "rel_DINO_at_SD": [0.6, 0.8]})
    table = relative_distance_table(records)
    assert list(table.columns) == [("SD", "correct match"), ("SD", "false match"),
                                   ("DINO", "correct match"), ("DINO", "false match")]
    assert table.loc["Average"].to_numpy() == pytest.approx([0.2, 0.6, 0.3, 0.7])
    assert table.loc["101"].to_numpy() == pytest.approx([0.1, 0.5, 0.2, 0.6])     # keypoint 0: SD ✓, DINO ✗, Fuse ✓
    assert table.loc["011"].to_numpy() == pytest.approx([0.3, 0.7, 0.4, 0.8])     # keypoint 1: SD ✗, DINO ✓, Fuse ✓
