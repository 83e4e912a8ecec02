"""PF-PASCAL loader on the synthetic fixture, and its rejection of malformed rows (PROTOCOL §7.2)."""
import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from sdfuse.data.datasets.pfpascal import PF_PASCAL_ALPHAS, PF_PASCAL_CLASSES, load_pfpascal
from sdfuse.data.datasets.synthetic import base_keypoints, base_pictures
from sdfuse.data.datasets.synthetic_formats import make_pfpascal_like
from sdfuse.errors import DatasetError
from tests.fixture_scope import per_module

CSV_NAME = "test_pairs_pf_pascal.csv"


@pytest.fixture(scope=per_module)
def pf_root(tmp_path_factory):
    return make_pfpascal_like(tmp_path_factory.mktemp("pf"))


@pytest.fixture(scope=per_module)
def pairs(pf_root):
    return load_pfpascal(pf_root)


def csv_rows(root):
    with (root / CSV_NAME).open(newline="") as handle:
        return list(csv.reader(handle))


def test_class_list_and_alphas():
    assert len(PF_PASCAL_CLASSES) == 20
    assert (PF_PASCAL_CLASSES[0], PF_PASCAL_CLASSES[14], PF_PASCAL_CLASSES[19]) == ("aeroplane", "person", "tvmonitor")
    assert PF_PASCAL_ALPHAS == (0.05, 0.10, 0.15)


def test_all_pairs_in_file_order(pairs, pf_root):
    assert len(pairs) == 9
    assert [p.category for p in pairs] == ["person"] * 3 + ["aeroplane"] * 3 + ["tvmonitor"] * 3
    assert pairs[0].pair_id == "000001-portrait_00-portrait_01:person"
    assert pairs[0].src_image == pf_root / "JPEGImages" / "portrait_00.jpg"
    assert [len(p.kp_ids) for p in pairs] == [9] * 6 + [6] * 3
    for pair in pairs:
        assert Image.open(pair.src_image).size == pair.src_size
        assert Image.open(pair.trg_image).size == pair.trg_size
        assert pair.threshold == max(pair.trg_size)


def test_keypoints_are_the_csv_values(pairs, pf_root):
    row = csv_rows(pf_root)[5]                                     # line 6: present_00 -> present_02
    xa, ya, xb, yb = ([float(v) for v in column.split(";")] for column in row[3:7])
    pair = pairs[4]
    assert pair.pair_id == "000005-present_00-present_02:aeroplane"
    np.testing.assert_array_equal(pair.src_kps, np.column_stack([xa, ya]))
    np.testing.assert_array_equal(pair.trg_kps, np.column_stack([xb, yb]))
    assert pair.visible.all()


def test_minus_one_padding_is_invisible_and_zeroed(pairs, pf_root):
    assert "-1" in csv_rows(pf_root)[1][5].split(";")              # XB of portrait_00 -> portrait_01
    first, second, third = pairs[:3]                               # targets: image 1, image 2, image 1
    assert first.visible.tolist() == [True] * 4 + [False] + [True] * 4
    assert first.trg_kps[4].tolist() == [0.0, 0.0]
    assert first.src_kps[4].tolist() != [0.0, 0.0]                 # visible in the source, kept
    assert second.visible.all()
    assert third.visible.sum() == 8 and not third.visible[4]


def test_image_size_threshold_is_alpha_840_in_the_frame(pairs):
    for pair in pairs:
        src, trg, threshold = pair.in_frame(840)
        assert threshold == pytest.approx(840.0)
        assert len(src) == len(trg) == pair.visible.sum()
    portrait = pairs[0]                                            # target 168×224: scale 3.75, x offset 105
    assert portrait.trg_size == (168, 224)
    _, trg, _ = portrait.in_frame(840)
    np.testing.assert_allclose(trg, portrait.trg_kps[portrait.visible] * 3.75 + [105, 0])


def test_ground_truth_is_correct_by_construction(pairs):
    picture = base_pictures()["present"]
    base = np.asarray(picture, dtype=float)
    lattice = np.round(base_keypoints(*picture.size)).astype(int)
    for pair in pairs[3:6]:
        image = np.asarray(Image.open(pair.trg_image).convert("RGB"), dtype=float)
        for (x, y), (bx, by) in zip(np.round(pair.trg_kps).astype(int), lattice):
            here = image[y - 1:y + 2, x - 1:x + 2].mean((0, 1))
            there = base[by - 2:by + 3, bx - 2:bx + 3].mean((0, 1))
            assert np.abs(here - there).mean() < 40


def test_headerless_csv_and_blank_lines_give_the_same_pairs(pf_root, pairs, tmp_path):
    root = tmp_path / "PF-dataset-PASCAL"
    shutil.copytree(pf_root, root)
    rows = csv_rows(root)[1:]
    with (root / CSV_NAME).open("w", newline="") as handle:
        csv.writer(handle).writerows(rows[:4] + [[]] + rows[4:])
    again = load_pfpascal(root)
    assert [p.pair_id for p in again] == [p.pair_id for p in pairs]


def test_missing_csv_says_what_to_download(tmp_path):
    with pytest.raises(DatasetError, match="test_pairs_pf_pascal.csv"):
        load_pfpascal(tmp_path / "PF-dataset-PASCAL")


def _replace(cells, column, edit):
    cells = list(cells)
    cells[column] = edit(cells[column])
    return cells


def _first_value(value):
    return lambda text: ";".join([value] + text.split(";")[1:])


def _drop_last(text):
    return ";".join(text.split(";")[:-1])


MALFORMED = {
    "x/y count mismatch": (lambda c: _replace(c, 3, _drop_last), "XA has 8 values but YA has 9"),
    "src/trg count mismatch": (lambda c: _replace(_replace(c, 5, _drop_last), 6, _drop_last), "9 source keypoints"),
    "non-numeric": (lambda c: _replace(c, 4, _first_value("abc")), "column YA is not"),
    "unknown class id": (lambda c: _replace(c, 2, lambda t: "21"), "unknown class id '21'"),
    "class id zero": (lambda c: _replace(c, 2, lambda t: "0"), "unknown class id '0'"),
    "fractional class id": (lambda c: _replace(c, 2, lambda t: "2.5"), "unknown class id '2.5'"),
    "missing image": (lambda c: _replace(c, 1, lambda t: "PF-dataset-PASCAL/JPEGImages/missing.jpg"), "missing.jpg"),
    "outside the image": (lambda c: _replace(c, 5, _first_value("999")), "keypoint 0 .* outside portrait_02.jpg"),
    "negative coordinate": (lambda c: _replace(c, 4, _first_value("-3")), "lies outside portrait_00.jpg"),
    "NaN": (lambda c: _replace(c, 6, _first_value("nan")), "NaN in XB/YB"),
    "too few columns": (lambda c: c[:6], "6 columns, expected 7"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_row_names_the_file_and_row(case, pf_root, tmp_path):
    root = tmp_path / "PF-dataset-PASCAL"
    shutil.copytree(pf_root, root)
    rows = csv_rows(root)
    edit, message = MALFORMED[case]
    rows[2] = edit(rows[2])                                        # line 3 of the file
    with (root / CSV_NAME).open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(DatasetError, match=f"{CSV_NAME}, row 3: .*{message}"):
        load_pfpascal(root)
