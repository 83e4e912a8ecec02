"""CUB-200-2011 under ASIC's protocol: crop arithmetic by hand, the loader on the fixture (PROTOCOL §9)."""
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from sdfuse.data.datasets.cub import (CUB_CLASSES, asic_crop, asic_square_box, crop_keypoints, load_cub, py2_round,
                                      read_part_locs)
from sdfuse.data.datasets.synthetic import base_pictures
from sdfuse.data.datasets.synthetic_formats import CUB_FIXTURE_CLASSES, cub_part_positions, make_cub_like
from sdfuse.errors import DatasetError
from tests.fixture_scope import per_module

MAT = ("cachedir", "cub", "data", "test_cub_cleaned.mat")


@pytest.fixture(scope=per_module)
def cub_root(tmp_path_factory):
    return make_cub_like(tmp_path_factory.mktemp("cub"))


@pytest.fixture(scope=per_module)
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cub_cache")


@pytest.fixture(scope=per_module)
def pairs(cub_root, cache):
    return load_cub(cub_root, cache_dir=cache)


# --- crop arithmetic by hand ------------------------------------------------------------------

def test_python2_rounding_sends_halves_away_from_zero():
    # Python 3's round() sends halves to even (round(2.5) = 2, round(0.5) = 0): these would differ
    assert [py2_round(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, -1.6)] == [1, 2, 3, -1, -3, 2, -2]


@pytest.mark.parametrize("bbox, box", [
    # bbox−1 = (10, 20, 49, 39); pads 2.0, 1.0 → (8, 19, 51, 40): 44 × 22; y0 = 19 − 11
    ((11, 21, 50, 40), (8, 8, 44)),
    # bbox−1 = (11, 0, 60, 9); pads 2.5, 0.5 → 8.5→9, −0.5→−1, 62.5→63, 9.5→10: 55 × 12; y0 = −1 − round(21.5)
    ((12, 1, 61, 10), (9, -23, 55)),
    # bbox−1 = (0, 0, 19, 14); pads 1.0, 0.75 → (−1, −1, 20, 15): 22 × 17; y0 = −1 − round(2.5) = −4 (not −3)
    ((1, 1, 20, 15), (-1, -4, 22)),
    # 232 × 100 px → pads 11.6, 5 → (−2, 45, 253, 154): 256 × 110; y0 = 45 − 73
    ((11, 51, 242, 150), (-2, -28, 256)),
])
def test_square_box_by_hand(bbox, box):
    assert asic_square_box(bbox) == box


def test_crop_replicates_the_border_outside_the_image():
    xs, ys = np.meshgrid(np.arange(250), np.arange(200))
    image = Image.fromarray(np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8))
    crop, x0, y0, side = asic_crop(image, (11, 51, 242, 150))
    assert (x0, y0, side) == (-2, -28, 256)                        # side 256: the resize is the identity
    pixels = np.asarray(crop)
    rows, cols = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    np.testing.assert_array_equal(pixels[..., 0], np.clip(cols - 2, 0, 249))
    np.testing.assert_array_equal(pixels[..., 1], np.clip(rows - 28, 0, 199))


def test_crop_of_a_constant_image_stays_constant():
    crop, x0, y0, side = asic_crop(Image.new("RGB", (40, 30), (90, 160, 30)), (1, 1, 20, 15))
    assert (x0, y0, side) == (-1, -4, 22) and crop.size == (256, 256)
    assert np.abs(np.asarray(crop, dtype=int) - [90, 160, 30]).max() <= 1   # zero padding would show black


def test_crop_keypoints_by_hand():
    np.testing.assert_allclose(crop_keypoints([[10, 20]], -2, -28, 256), [[11, 47]])
    np.testing.assert_allclose(crop_keypoints([[9, 9], [31, 20]], 8, 8, 44), [[0, 0], [128, 64]])


# --- the loader on the fixture ----------------------------------------------------------------

def test_all_ordered_pairs_within_each_class(pairs, cub_root):
    assert CUB_CLASSES == (1, 2, 3)
    assert len(pairs) == 3 * 3 * 2
    assert [p.category for p in pairs[::6]] == [folder for folder, _ in CUB_FIXTURE_CLASSES]
    stems = [p.pair_id.split(":")[0] for p in pairs[:6]]           # id 2 is a training image: absent
    assert stems == ["Black_footed_Albatross_0001-Black_footed_Albatross_0003",
                     "Black_footed_Albatross_0001-Black_footed_Albatross_0004",
                     "Black_footed_Albatross_0003-Black_footed_Albatross_0001",
                     "Black_footed_Albatross_0003-Black_footed_Albatross_0004",
                     "Black_footed_Albatross_0004-Black_footed_Albatross_0001",
                     "Black_footed_Albatross_0004-Black_footed_Albatross_0003"]
    for pair in pairs:
        assert pair.threshold == 256.0 and pair.src_size == pair.trg_size == (256, 256)
        assert Image.open(pair.src_image).size == (256, 256)
        assert pair.src_kps.shape == pair.trg_kps.shape == (15, 2)


def test_class_selection(cub_root, cache):
    laysan = load_cub(cub_root, classes=(2,), cache_dir=cache)
    assert len(laysan) == 6 and {p.category for p in laysan} == {"002.Laysan_Albatross"}


def test_keypoints_follow_the_crop_and_visibility_is_mutual(pairs, cub_root):
    lines = (cub_root / "parts" / "part_locs.txt").read_text().split("\n")
    raw = np.array([line.split() for line in lines if line], dtype=float).reshape(-1, 15, 5)
    records = scipy.io.loadmat(cub_root.joinpath(*MAT), struct_as_record=False, squeeze_me=True)["images"]
    pair = pairs[1]                                                # image id 1 → image id 4
    for kps, record, image_id in ((pair.src_kps, records[0], 1), (pair.trg_kps, records[2], 4)):
        assert int(record.id) == image_id
        box = record.bbox
        x0, y0, side = asic_square_box((box.x1, box.y1, box.x2, box.y2))
        x, y, visible = raw[image_id - 1, :, 2], raw[image_id - 1, :, 3], raw[image_id - 1, :, 4] > 0
        expected = np.stack([(x - (x0 + 1)) * 256 / side, (y - (y0 + 1)) * 256 / side], axis=1)
        np.testing.assert_allclose(kps[visible], expected[visible])
        assert not kps[~visible].any()
    assert np.flatnonzero(~pair.visible).tolist() == [0, 3, 7, 10]   # image 1 hides parts 0, 7; image 4 hides 3, 10
    src, trg, threshold = pair.in_frame(840)
    assert threshold == pytest.approx(840.0)
    np.testing.assert_allclose(trg, pair.trg_kps[pair.visible] * 840 / 256)


def test_ground_truth_is_correct_by_construction(pairs):
    picture = base_pictures()["present"]                           # class 002
    base = np.asarray(picture, dtype=float)
    parts = np.round(cub_part_positions(*picture.size)).astype(int)
    for pair in pairs[6:12:2]:
        image = np.asarray(Image.open(pair.src_image).convert("RGB"), dtype=float)
        for k in np.flatnonzero(pair.visible):
            x, y = np.round(pair.src_kps[k]).astype(int)
            bx, by = parts[k]
            here = image[y - 2:y + 3, x - 2:x + 3].mean((0, 1))
            there = base[by - 2:by + 3, bx - 2:bx + 3].mean((0, 1))
            assert np.abs(here - there).mean() < 40


def test_crops_are_cached_and_reused(cub_root, tmp_path):
    first = load_cub(cub_root, classes=(3,), cache_dir=tmp_path)
    files = sorted((tmp_path / "cub_asic256" / "003.Sooty_Albatross").glob("*.png"))
    assert len(files) == 3
    stamps = [f.stat().st_mtime_ns for f in files]
    second = load_cub(cub_root, classes=(3,), cache_dir=tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert [p.src_image for p in first] == [p.src_image for p in second]
    np.testing.assert_array_equal(first[0].src_kps, second[0].src_kps)


# --- malformed inputs -------------------------------------------------------------------------

@pytest.fixture
def cub_copy(cub_root, tmp_path):
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(cub_root, root)
    return root


def test_missing_split_file_says_what_to_download(tmp_path):
    with pytest.raises(DatasetError, match="cachedir.tar.gz"):
        load_cub(tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("bad, message", [
    ("5 3 12.0 oops 1", "line 47: expected"),
    ("5 3 12.0 40.0", "line 47: expected"),
    ("5 3 12.0 40.0 2", "line 47: expected"),
    ("5 3 12.0 nan 1", "line 47: expected"),
    ("5 16 12.0 40.0 1", "line 47: part id 16"),
])
def test_malformed_part_line_names_file_and_line(cub_copy, tmp_path, bad, message):
    path = cub_copy / "parts" / "part_locs.txt"
    lines = path.read_text().split("\n")
    lines[46] = bad                                                # image 4, part 2 → line 47
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=f"part_locs.txt, {message}"):
        load_cub(cub_copy, cache_dir=tmp_path / "cache")


def test_missing_parts_of_an_image_are_reported(cub_copy, tmp_path):
    path = cub_copy / "parts" / "part_locs.txt"
    path.write_text("\n".join(line for line in path.read_text().split("\n") if not line.startswith("7 15 ")))
    with pytest.raises(DatasetError, match="image id 7 has 14 parts"):
        read_part_locs(path, {1, 7})


def test_malformed_split_record_names_the_record(cub_copy, tmp_path):
    mat = cub_copy.joinpath(*MAT)
    raw = scipy.io.loadmat(mat)
    raw["images"][0, 1]["rel_path"] = np.array(["Albatross/x.jpg"])
    scipy.io.savemat(mat, {"images": raw["images"]})
    with pytest.raises(DatasetError, match="test_cub_cleaned.mat, record 2: needs"):
        load_cub(cub_copy, cache_dir=tmp_path / "cache")


def test_inverted_bbox_is_rejected(cub_copy, tmp_path):
    mat = cub_copy.joinpath(*MAT)
    raw = scipy.io.loadmat(mat)
    raw["images"][0, 3]["bbox"][0, 0]["x2"] = np.array([[0.0]])
    scipy.io.savemat(mat, {"images": raw["images"]})
    with pytest.raises(DatasetError, match="record 4: invalid id .* or bbox"):
        load_cub(cub_copy, cache_dir=tmp_path / "cache")


def test_missing_image_is_named(cub_copy, tmp_path):
    (cub_copy / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0007.jpg").unlink()
    with pytest.raises(DatasetError, match="Laysan_Albatross_0007.jpg cannot be opened"):
        load_cub(cub_copy, cache_dir=tmp_path / "cache")
