"""SPair-71k and PF-Pascal loaders on tiny hand-written fixtures in the real on-disk formats (PROTOCOL §7.1,
§7.2, §11): every Pair field is compared with the value written by hand, and each malformed field is
rejected with a DatasetError naming the file and that field. Widths differ from heights, box corners
differ from each other and keypoints have x ≠ y, so a swapped or misread field shows."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfuse.data.datasets import checks
from sdfuse.data.datasets.pfpascal import load_pfpascal
from sdfuse.data.datasets.spair import load_spair, read_pair, sample_indices
from sdfuse.errors import DatasetError

SRC_SIZE, TRG_SIZE = (30, 40), (50, 20)                            # (W, H): portrait source, landscape target


def _image(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)
    return path


# --- SPair-71k ---------------------------------------------------------------------------------------------

CATEGORY = "bird"


def _spair_root(tmp_path: Path) -> Path:
    """SPair-71k/{JPEGImages/bird/{src,trg}.jpg, ImageAnnotation/bird/, PairAnnotation/test/}."""
    root = tmp_path / "SPair-71k"
    _image(root / "JPEGImages" / CATEGORY / "src.jpg", SRC_SIZE)
    _image(root / "JPEGImages" / CATEGORY / "trg.jpg", TRG_SIZE)
    (root / "ImageAnnotation" / CATEGORY).mkdir(parents=True)
    (root / "PairAnnotation" / "test").mkdir(parents=True)
    return root


def _annotation(**changes) -> dict:
    """A SPair-71k pair annotation (no ``mirror`` key: the loader's default is 'not mirrored')."""
    data = {"category": CATEGORY, "src_imname": "src.jpg", "trg_imname": "trg.jpg",
            "src_imsize": [30, 40, 3], "trg_imsize": [50, 20, 3],
            "src_kps": [[1.5, 38.0], [29.0, 2.25], [7.0, 11.0]],
            "trg_kps": [[49.0, 3.0], [0.5, 19.0], [22.0, 8.5]],
            "kps_ids": ["4", "0", "7"],
            "src_bndbox": [1, 2, 29, 39], "trg_bndbox": [3, 2, 40, 17]}
    data.update(changes)
    return data


def _pair_file(root: Path, data: dict, stem: str = "000001-src-trg:bird") -> Path:
    path = root / "PairAnnotation" / "test" / f"{stem}.json"
    path.write_text(json.dumps(data))
    return path


def test_spair_pair_fields_are_the_annotation_values(tmp_path):
    """Each Pair field is the JSON's: sizes, kps, ids as ints, all visible, thr = trg box's longer side (§7.1)."""
    root = _spair_root(tmp_path)
    _pair_file(root, _annotation())
    (pair,) = load_spair(root, pairs_per_category=0)
    assert pair.pair_id == "000001-src-trg:bird"
    assert pair.category == "bird"
    assert pair.src_image == root / "JPEGImages" / "bird" / "src.jpg"
    assert pair.trg_image == root / "JPEGImages" / "bird" / "trg.jpg"
    assert pair.src_size == (30, 40) and pair.trg_size == (50, 20)
    np.testing.assert_array_equal(pair.src_kps, [[1.5, 38.0], [29.0, 2.25], [7.0, 11.0]])
    np.testing.assert_array_equal(pair.trg_kps, [[49.0, 3.0], [0.5, 19.0], [22.0, 8.5]])
    assert pair.src_kps.dtype == pair.trg_kps.dtype == np.float64
    assert pair.visible.tolist() == [True, True, True]
    assert pair.threshold == 37.0                                  # box 3,2 → 40,17: sides 37 and 15, no +1
    assert pair.kp_ids == (4, 0, 7)


def test_spair_threshold_is_the_target_box_height_when_that_side_is_longer(tmp_path):
    """thr = max(x2 − x1, y2 − y1) of trg_bndbox; here the height 19 − 1 (PROTOCOL §7.1)."""
    root = _spair_root(tmp_path)
    pair = read_pair(_pair_file(root, _annotation(trg_bndbox=[5, 1, 9, 19])), root)
    assert pair.threshold == 18.0


def test_spair_integral_float_kps_ids_are_read_as_integers(tmp_path):
    """kps_ids 4.0, 0.0, 7.0 are the ids 4, 0, 7."""
    root = _spair_root(tmp_path)
    pair = read_pair(_pair_file(root, _annotation(kps_ids=[4.0, 0.0, 7.0])), root)
    assert pair.kp_ids == (4, 0, 7) and all(type(k) is int for k in pair.kp_ids)


def test_spair_imsize_without_the_channel_count_is_accepted(tmp_path):
    """``*_imsize`` may be [W, H] as well as [W, H, C]."""
    root = _spair_root(tmp_path)
    pair = read_pair(_pair_file(root, _annotation(src_imsize=[30, 40], trg_imsize=[50, 20])), root)
    assert pair.src_size == (30, 40) and pair.trg_size == (50, 20)


def test_spair_image_sides_of_max_side_pixels_are_accepted(tmp_path):
    """A 2¹⁶ = 65536-px side (one more than JPEG allows) is plausible, in width and in height."""
    root = _spair_root(tmp_path)
    _image(root / "JPEGImages" / CATEGORY / "wide.png", (65536, 2))
    _image(root / "JPEGImages" / CATEGORY / "tall.png", (2, 65536))
    data = _annotation(src_imname="wide.png", trg_imname="tall.png", src_imsize=[65536, 2, 3],
                       trg_imsize=[2, 65536, 3], src_kps=[[65535.0, 1.0]], trg_kps=[[1.0, 65535.0]],
                       kps_ids=[0], src_bndbox=[0, 0, 65536, 2], trg_bndbox=[0, 0, 2, 65536])
    pair = read_pair(_pair_file(root, data), root)
    assert pair.src_size == (65536, 2) and pair.trg_size == (2, 65536)
    assert pair.threshold == 65536.0


def test_spair_keypoints_on_the_image_border_are_inside(tmp_path):
    """Keypoints at x = 0, x = W, y = 0 and y = H of the 30×40 source are inside [0, W] × [0, H]; y = 35 > W too."""
    root = _spair_root(tmp_path)
    border = [[0.0, 35.0], [30.0, 0.0], [12.0, 40.0]]
    pair = read_pair(_pair_file(root, _annotation(src_kps=border)), root)
    np.testing.assert_array_equal(pair.src_kps, border)


def test_spair_keypoint_right_of_the_image_is_rejected(tmp_path):
    """x = 31 > W = 30 with y inside the image lies outside it."""
    root = _spair_root(tmp_path)
    path = _pair_file(root, _annotation(src_kps=[[31.0, 5.0], [29.0, 2.25], [7.0, 11.0]]))
    with pytest.raises(DatasetError, match=re.escape("src_kps[0] = [31.0, 5.0] lies outside the 30×40 image")):
        read_pair(path, root)


def test_spair_category_is_the_file_name_text_after_the_last_colon(tmp_path):
    """A pair file ``x:y:bird.json`` is a bird pair (its ':<category>' suffix is the last one)."""
    root = _spair_root(tmp_path)
    pair = read_pair(_pair_file(root, _annotation(), stem="000001-x:y:bird"), root)
    assert pair.category == "bird" and pair.pair_id == "000001-x:y:bird"


def test_spair_category_unlike_the_file_name_suffix_is_rejected(tmp_path):
    """``…:cow.json`` holding a bird pair is refused."""
    root = _spair_root(tmp_path)
    path = _pair_file(root, _annotation(), stem="000001-src-trg:cow")
    with pytest.raises(DatasetError, match="category 'bird' differs from the file name's 'cow'"):
        read_pair(path, root)


def _not_a_name(value) -> str:
    return f"is {re.escape(repr(value))}, not a plain file name"


SPAIR_FIELDS = {
    "category a number": ({"category": 7}, "category " + _not_a_name(7)),
    "category '.'": ({"category": "."}, "category " + _not_a_name(".")),
    "category '..'": ({"category": ".."}, "category " + _not_a_name("..")),
    "src_imname with a backslash": ({"src_imname": "sub\\src.jpg"}, "src_imname " + _not_a_name("sub\\src.jpg")),
    "trg_imname with a slash": ({"trg_imname": "sub/trg.jpg"}, "trg_imname " + _not_a_name("sub/trg.jpg")),
    "src_imsize not a list": ({"src_imsize": "big"}, "src_imsize is big, not a list"),
    "src_imsize width not an integer": ({"src_imsize": ["wide", 40, 3]}, "src_imsize is 'wide', not an integer"),
    "trg_imsize not a list": ({"trg_imsize": 5}, "trg_imsize is 5, not a list"),
    "kps_ids not a list": ({"kps_ids": "4,0,7"}, "kps_ids is 4,0,7, not a list"),
    "kps_ids[1] not an integer": ({"kps_ids": ["4", "x", "7"]}, re.escape("kps_ids[1] is 'x', not an integer")),
    "src_kps not a list": ({"src_kps": "none"}, "src_kps is none, not a list"),
    "src_kps[1] y a string": ({"src_kps": [[1.5, 38.0], [29.0, "2.25"], [7.0, 11.0]]},
                              re.escape("src_kps[1] y is '2.25', not a number")),
    "trg_kps[0] x a bool": ({"trg_kps": [[True, 3.0], [0.5, 19.0], [22.0, 8.5]]},
                            re.escape("trg_kps[0] x is True, not a number")),
    "trg_bndbox of 3 numbers": ({"trg_bndbox": [3, 2, 40]}, re.escape("trg_bndbox is [3, 2, 40], not a list of 4")),
    "trg_bndbox of 5 numbers": ({"trg_bndbox": [3, 2, 40, 17, 1]},
                                re.escape("trg_bndbox is [3, 2, 40, 17, 1], not a list of 4")),
    "trg_bndbox with a string": ({"trg_bndbox": [3, "2", 40, 17]}, "trg_bndbox is '2', not a number"),
}


@pytest.mark.parametrize("case", SPAIR_FIELDS, ids=list(SPAIR_FIELDS))
def test_spair_malformed_field_is_rejected_naming_the_file_and_the_field(case, tmp_path):
    """A bad field raises DatasetError '<file>: malformed SPair-71k pair annotation: <field> is …' (§11)."""
    root = _spair_root(tmp_path)
    change, message = SPAIR_FIELDS[case]
    path = _pair_file(root, _annotation(**change))
    with pytest.raises(DatasetError, match=message) as raised:
        read_pair(path, root)
    assert str(raised.value).startswith(f"{path}: malformed SPair-71k pair annotation: ")


def test_spair_read_pair_records_the_image_sizes_in_the_callers_memo(tmp_path):
    """read_pair fills the caller's ``sizes`` with each image's (W, H), and uses a size already there."""
    root = _spair_root(tmp_path)
    path = _pair_file(root, _annotation())
    sizes: dict = {}
    read_pair(path, root, sizes)
    src, trg = root / "JPEGImages" / "bird" / "src.jpg", root / "JPEGImages" / "bird" / "trg.jpg"
    assert sizes == {src: (30, 40), trg: (50, 20)}
    src.write_bytes(b"not an image")                               # the memo, not the file, gives its size now
    assert read_pair(path, root, sizes).src_size == (30, 40)


def test_spair_each_image_header_is_read_once_per_load(tmp_path, monkeypatch):
    """Two pairs of the same two images read each image's header once (memoised across the load)."""
    root = _spair_root(tmp_path)
    _pair_file(root, _annotation(), stem="000001-src-trg:bird")
    _pair_file(root, _annotation(), stem="000002-src-trg:bird")
    reads: list[Path] = []
    real = checks.image_size

    def counting(path, **kwargs):
        reads.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(checks, "image_size", counting)
    assert len(load_spair(root, pairs_per_category=0)) == 2
    assert sorted(p.name for p in reads) == ["src.jpg", "trg.jpg"]


def _three_bird_pairs(tmp_path: Path) -> tuple[Path, list[str]]:
    root = _spair_root(tmp_path)
    stems = [f"00000{i}-src-trg:bird" for i in (1, 2, 3)]
    for stem in stems:
        _pair_file(root, _annotation(), stem=stem)
    return root, stems


def test_spair_default_load_draws_20_pairs_with_seed_42(tmp_path):
    """Default: np.random.RandomState(42).choice(n, 20), with replacement, per category (PROTOCOL §7.1)."""
    root, stems = _three_bird_pairs(tmp_path)
    want = [stems[i] for i in np.random.RandomState(42).choice(3, 20)]
    assert [p.pair_id for p in load_spair(root)] == want


def test_spair_load_draws_with_the_seed_it_is_given(tmp_path):
    """seed=7: RandomState(7).choice(n, k) (PROTOCOL §7.1)."""
    root, stems = _three_bird_pairs(tmp_path)
    want = [stems[i] for i in np.random.RandomState(7).choice(3, 5)]
    assert [p.pair_id for p in load_spair(root, pairs_per_category=5, seed=7)] == want


def test_sample_indices_defaults_to_seed_42_and_draws_even_a_single_pair():
    """sample_indices(n, k) is RandomState(42).choice(n, k) also for k = 1; only k = 0 keeps all (§7.1)."""
    assert sample_indices(10, 5) == np.random.RandomState(42).choice(10, 5).tolist()
    assert sample_indices(5, 1) == np.random.RandomState(42).choice(5, 1).tolist()
    assert sample_indices(5, 0) == [0, 1, 2, 3, 4]


# --- PF-Pascal -----------------------------------------------------------------------------------------------

HEADER = ["source_image", "target_image", "class", "XA", "YA", "XB", "YB"]
ROW = ["PF-dataset-PASCAL/JPEGImages/src.jpg", "PF-dataset-PASCAL/JPEGImages/trg.jpg", "3",
       "1.5;29;-1", "38;2.25;-1", "49;0.5;22", "3;19;8.5"]
"""Class 3 is 'bird'; the third source keypoint is the (−1, −1) padding."""


def _pf_root(tmp_path: Path, rows: list[list[str]]) -> Path:
    """data/PF-dataset-PASCAL/{JPEGImages/{src,trg}.jpg, test_pairs_pf_pascal.csv}."""
    root = tmp_path / "data" / "PF-dataset-PASCAL"
    _image(root / "JPEGImages" / "src.jpg", SRC_SIZE)
    _image(root / "JPEGImages" / "trg.jpg", TRG_SIZE)
    _write_csv(root, rows)
    return root


def _write_csv(root: Path, rows: list[list[str]]) -> Path:
    path = root / "test_pairs_pf_pascal.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _cells(**changes) -> list[str]:
    cells = list(ROW)
    for column, value in changes.items():
        cells[HEADER.index(column)] = value
    return cells


def test_pfpascal_pair_fields_are_the_csv_values(tmp_path):
    """Columns by position; 1-based class id; (−1, −1) absent and zeroed; thr = max(W_t, H_t) (§7.2, AMBIG-23)."""
    root = _pf_root(tmp_path, [HEADER, ROW])
    (pair,) = load_pfpascal(root)
    assert pair.pair_id == "000001-src-trg:bird"
    assert pair.category == "bird"
    assert pair.src_image == root / "JPEGImages" / "src.jpg" and pair.trg_image == root / "JPEGImages" / "trg.jpg"
    assert pair.src_size == (30, 40) and pair.trg_size == (50, 20)
    np.testing.assert_array_equal(pair.src_kps, [[1.5, 38.0], [29.0, 2.25], [0.0, 0.0]])
    np.testing.assert_array_equal(pair.trg_kps, [[49.0, 3.0], [0.5, 19.0], [22.0, 8.5]])
    assert pair.visible.tolist() == [True, True, False]
    assert pair.threshold == 50.0
    assert pair.kp_ids == (0, 1, 2)


def test_pfpascal_listed_visible_keeps_a_source_minus_one_entry_visible(tmp_path):
    """listed_visible=True: every listed entry is visible, (−1, −1) kept as written, as the reference (AMBIG-23)."""
    root = _pf_root(tmp_path, [HEADER, ROW])
    (pair,) = load_pfpascal(root, listed_visible=True)
    assert pair.visible.tolist() == [True, True, True]
    np.testing.assert_array_equal(pair.src_kps, [[1.5, 38.0], [29.0, 2.25], [-1.0, -1.0]])


def test_pfpascal_row_of_blank_cells_is_skipped(tmp_path):
    """A line of commas and spaces is a blank line, ignored as pandas does."""
    root = _pf_root(tmp_path, [HEADER, ROW, [" ", "", " ", "", "", "", "  "], ROW])
    assert [p.pair_id for p in load_pfpascal(root)] == ["000001-src-trg:bird", "000002-src-trg:bird"]


def test_pfpascal_quoted_cells_are_read_verbatim(tmp_path):
    """A quoted path holding a carriage return names that file (the CSV is opened with newline='')."""
    root = _pf_root(tmp_path, [HEADER])
    _image(root / "JPEGImages" / "sr\rc.jpg", SRC_SIZE)
    _write_csv(root, [HEADER, _cells(source_image="PF-dataset-PASCAL/JPEGImages/sr\rc.jpg")])
    (pair,) = load_pfpascal(root)
    assert pair.src_image == root / "JPEGImages" / "sr\rc.jpg" and pair.src_size == (30, 40)


@pytest.mark.parametrize("text", ["", "{root}/JPEGImages/src.jpg",
                                  "PF-dataset-PASCAL/JPEGImages/../JPEGImages/src.jpg"],
                         ids=["empty", "absolute inside the folder", "'..' back inside the folder"])
def test_pfpascal_image_path_that_is_not_plainly_relative_is_refused(text, tmp_path):
    """Empty, absolute or '..' image paths are refused even where they would reach an image in the folder."""
    root = _pf_root(tmp_path, [HEADER])
    cell = text.format(root=root)
    _write_csv(root, [HEADER, _cells(source_image=cell)])
    with pytest.raises(DatasetError, match=re.escape(f"row 2: source_image {cell!r} is not a relative path")):
        load_pfpascal(root)


def test_pfpascal_non_numeric_xa_names_the_xa_column(tmp_path):
    """A bad XA value names column XA (the x list), not YA."""
    root = _pf_root(tmp_path, [HEADER, _cells(XA="1.5;abc;-1")])
    with pytest.raises(DatasetError, match="row 2: column XA is not a ';'-separated list of numbers"):
        load_pfpascal(root)


@pytest.mark.parametrize("column", ["source_image", "target_image"])
def test_pfpascal_missing_image_says_how_to_verify_the_dataset(column, tmp_path):
    """A missing source or target image names it and the 'sdfuse data verify pfpascal' command."""
    root = _pf_root(tmp_path, [HEADER, _cells(**{column: "PF-dataset-PASCAL/JPEGImages/gone.jpg"})])
    with pytest.raises(DatasetError, match="gone.jpg") as raised:
        load_pfpascal(root)
    assert f"sdfuse data verify pfpascal --root {root.parent}" in str(raised.value)


def test_pfpascal_undecodable_first_line_is_reported_after_row_0(tmp_path):
    """A CSV that is not UTF-8 from its first byte fails before any row is read: 'after row 0'."""
    root = _pf_root(tmp_path, [HEADER])
    (root / "test_pairs_pf_pascal.csv").write_bytes(b"source_image\xff,target_image\n")
    with pytest.raises(DatasetError, match=r"test_pairs_pf_pascal.csv, after row 0: not a readable CSV file "
                                           r"\(UnicodeDecodeError"):
        load_pfpascal(root)


def test_pfpascal_unreadable_row_3_is_reported_after_row_2(tmp_path):
    """A field over the csv module's limit on line 3 fails after the two lines read: 'after row 2'."""
    assert csv.field_size_limit() < 200_000
    root = _pf_root(tmp_path, [HEADER, ROW, ["x" * 200_000]])
    with pytest.raises(DatasetError, match=r"test_pairs_pf_pascal.csv, after row 2: not a readable CSV file "
                                           r"\(Error: field larger than field limit"):
        load_pfpascal(root)
