"""Known answers for the CUB, TSS and .flo readers on tiny files written by hand (PROTOCOL §8, §9, §11).

Every fixture here is written in the dataset's own format by the test itself (the CMR/ACSM split
``.mat``, ``parts/part_locs.txt``, TSS pair folders, Middlebury ``.flo`` bytes), with widths ≠
heights and x ≠ y, and every expected value is worked out by hand in the comments.
"""
import struct

import numpy as np
import pytest
import scipy.io
from PIL import Image

from sdfuse.data.datasets.cub import asic_crop, asic_square_box, load_cub, read_part_locs, read_split
from sdfuse.data.datasets.flo import read_flo
from sdfuse.data.datasets.tss import load_tss, read_sample
from sdfuse.errors import DatasetError

ALBATROSS = "001.Black_footed_Albatross"


# --- CUB: hand-written split file and part locations ----------------------------------------------

def _write_split(root, records):
    """``cachedir/cub/data/test_cub_cleaned.mat`` with an ``images`` struct array (the CMR layout)."""
    path = root / "cachedir" / "cub" / "data" / "test_cub_cleaned.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(records[0])
    table = np.zeros((1, len(records)), dtype=[(field, "O") for field in fields])
    for index, record in enumerate(records):
        table[0, index] = tuple(record[field] for field in fields)
    scipy.io.savemat(path, {"images": table})
    return path


def _bbox(x1, y1, x2, y2):
    return {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)}


def _split_record(**fields):
    record = {"id": 1.0, "rel_path": f"{ALBATROSS}/Black_footed_Albatross_0001.jpg", "bbox": _bbox(5, 4, 24, 15)}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


def test_split_record_without_rel_path_is_rejected_naming_the_empty_path(tmp_path):
    """A record lacking rel_path reads as '' and is refused as not 'NNN.Class/name.jpg' (PROTOCOL §9)."""
    mat = _write_split(tmp_path, [_split_record(rel_path=None)])
    with pytest.raises(DatasetError, match=r"test_cub_cleaned\.mat, record 1: rel_path '' is not 'NNN\.Class/name\.jpg'"):
        read_split(mat, (1,))


@pytest.mark.parametrize("rel_path", [
    f"{ALBATROSS}/",                 # two parts, the second empty
    f"{ALBATROSS}/..",               # two parts, the second '..'
    f"{ALBATROSS}/a\\b.jpg",         # two parts, a backslash inside
])
def test_split_rel_path_with_an_empty_dotdot_or_backslash_part_is_rejected(tmp_path, rel_path):
    """rel_path must be exactly 'NNN.Class/name.jpg': no empty part, no '..', no backslash (PROTOCOL §9)."""
    mat = _write_split(tmp_path, [_split_record(rel_path=rel_path)])
    with pytest.raises(DatasetError, match=r"record 1: rel_path .* is not 'NNN\.Class/name\.jpg'"):
        read_split(mat, (1,))


@pytest.mark.parametrize("size_fields, size", [
    ({}, None),                                   # the file does not record the size
    ({"width": 40.0}, None),                      # only one of the two: not a size
    ({"width": 40.0, "height": 30.0}, (40, 30)),  # both: (width, height)
])
def test_split_record_size_is_width_height_only_when_both_are_recorded(tmp_path, size_fields, size):
    """width/height are read as (W, H) when both are present, else the size is None (PROTOCOL §9)."""
    mat = _write_split(tmp_path, [_split_record(**size_fields)])
    [record] = read_split(mat, (1,))
    assert record.size == size
    assert (record.image_id, record.class_id, record.bbox) == (1, 1, (5.0, 4.0, 24.0, 15.0))


@pytest.mark.parametrize("width, height", [(40.5, 30.0), (40.0, 30.5)])
def test_split_record_with_a_fractional_width_or_height_is_rejected(tmp_path, width, height):
    """A recorded width or height that is not a whole number of pixels is an error (PROTOCOL §9)."""
    mat = _write_split(tmp_path, [_split_record(width=width, height=height)])
    with pytest.raises(DatasetError, match=rf"record 1: needs id.*width {width}, height {height}"):
        read_split(mat, (1,))


@pytest.mark.parametrize("box", [
    (3, 9, 7, 12),     # y1 = 9 > x2 = 7: a valid box (only x1 ≤ x2 and y1 ≤ y2 matter)
    (4, 2, 4, 6),      # x1 = x2: one pixel wide (the bbox is pixel-inclusive)
    (1, 5, 8, 5),      # y1 = y2: one pixel tall
])
def test_split_accepts_one_pixel_boxes_and_boxes_whose_y1_exceeds_x2(tmp_path, box):
    """A 1-based inclusive bbox is valid when x1 ≤ x2 and y1 ≤ y2 (PROTOCOL §9)."""
    mat = _write_split(tmp_path, [_split_record(bbox=_bbox(*box))])
    [record] = read_split(mat, (1,))
    assert record.bbox == tuple(float(v) for v in box)


def _part_lines(image_id, points, hidden=()):
    """15 ``image_id part_id x y visible`` lines; hidden parts are written as 0 0 0, as CUB does."""
    return [f"{image_id} {k + 1} 0.0 0.0 0" if k in hidden else f"{image_id} {k + 1} {x:.1f} {y:.1f} 1"
            for k, (x, y) in enumerate(points)]


def test_part_locs_blank_line_between_images_is_skipped(tmp_path):
    """Blank lines in part_locs.txt are skipped, not the end of the file (PROTOCOL §9)."""
    first = [(10.0 + k, 20.0 + 2 * k) for k in range(15)]
    second = [(30.0 - k, 5.0 + 0.5 * k) for k in range(15)]
    path = tmp_path / "part_locs.txt"
    path.write_text("\n".join(_part_lines(1, first, hidden={3}) + [""] + _part_lines(2, second)) + "\n")
    parts = read_part_locs(path, {1, 2})
    points, visible = parts[2]
    np.testing.assert_array_equal(points, second)
    assert visible.all()
    points, visible = parts[1]
    assert np.flatnonzero(~visible).tolist() == [3]
    assert points[3].tolist() == [0.0, 0.0] and points[14].tolist() == [24.0, 48.0]


@pytest.mark.parametrize("bad", ["1 3 -2.0 5.0 1", "1 3 5.0 -2.0 1"])
def test_part_locs_with_one_negative_coordinate_is_rejected(tmp_path, bad):
    """x < 0 or y < 0 alone makes a part line malformed (PROTOCOL §9)."""
    lines = _part_lines(1, [(10.0 + k, 20.0 + k) for k in range(15)])
    lines[2] = bad
    path = tmp_path / "part_locs.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="part_locs.txt, line 3: expected"):
        read_part_locs(path, {1})


def test_unreadable_part_locs_names_the_manifest_and_the_fetch_command(tmp_path):
    """A missing part_locs.txt says which manifest to read and what to type (PROTOCOL §11)."""
    root = tmp_path / "CUB_200_2011"
    (root / "parts").mkdir(parents=True)
    with pytest.raises(DatasetError) as raised:
        read_part_locs(root / "parts" / "part_locs.txt", {1})
    assert f"see data_manifests/cub200.yaml; get it with: sdfuse data fetch cub200 --root {tmp_path}" \
        in str(raised.value)


# --- CUB: the square box and the crop ---------------------------------------------------------------

@pytest.mark.parametrize("bbox, box", [
    # bbox−1 = (13, 13, 17, 23); w+1 = 5, h+1 = 11 → pads 0.25, 0.55 → 12.75→13, 12.45→12, 17.25→17,
    # 23.55→24: 5 wide × 13 tall; side 13, x0 = 13 − round(8/2) = 9, y0 = 12
    ((14, 14, 18, 24), (9, 12, 13)),
    # bbox−1 = (13, 13, 17, 41); w+1 = 5, h+1 = 29 → pads 0.25, 1.45 → 13, 11.55→12, 17, 42.45→42:
    # 5 wide × 31 tall; side 31, x0 = 13 − round(26/2) = 0, y0 = 12
    ((14, 14, 18, 42), (0, 12, 31)),
])
def test_tall_box_is_squared_by_widening_around_its_centre(bbox, box):
    """A box taller than wide pads by 5 % of (h+1) vertically and widens symmetrically (PROTOCOL §9)."""
    assert asic_square_box(bbox) == box


def _lanczos_1d(values, out):
    """Pillow's convention, written out: output pixel i samples the input at (i + 0.5)·n/out − 0.5
    with the Lanczos-3 kernel sinc(x)·sinc(x/3) (no widening when enlarging), weights normalised."""
    n = len(values)
    centres = (np.arange(out) + 0.5) * n / out
    x = np.arange(n)[None, :] + 0.5 - centres[:, None]
    weights = np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
    return (weights @ values) / weights.sum(axis=1)


def test_crop_is_edge_padded_and_resized_with_lanczos():
    """The square window (edge-replicated past the image) is resized with LANCZOS (PROTOCOL §9 steps 4–5)."""
    pixels = np.zeros((30, 20, 3), np.uint8)                      # 20 wide × 30 tall, constant down each column
    pixels[:, :15, 0], pixels[:, 15:, 0] = 40, 210                # a step between columns 14 and 15
    pixels[:, :, 1] = 100
    pixels[:, :12, 2], pixels[:, 12:, 2] = 230, 10
    crop, x0, y0, side = asic_crop(Image.fromarray(pixels), (14, 14, 18, 24), size=20)
    assert (x0, y0, side) == (9, 12, 13)                          # columns 9 … 21: 20 and 21 repeat column 19
    window = pixels[0, np.minimum(np.arange(9, 22), 19)].astype(float)
    row = np.stack([_lanczos_1d(window[:, c], 20) for c in range(3)], axis=1)
    expected = np.clip(np.round(row), 0, 255)
    got = np.asarray(crop, dtype=float)
    assert got.shape == (20, 20, 3)
    assert np.abs(got - expected[None]).max() <= 1                # Pillow's fixed-point rounding


def test_crop_of_a_grayscale_image_is_rgb():
    """The crop is taken of the image converted to RGB (PROTOCOL §9)."""
    crop, *_ = asic_crop(Image.new("L", (40, 30), 77), (5, 4, 24, 15))
    assert crop.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(crop), np.full((256, 256, 3), 77))


@pytest.mark.parametrize("image_size, bbox, box", [
    # bbox−1 = (11, 0, 30, 19); pads 1.0, 1.0 → (10, −1, 31, 20): 22 × 22, x0 = 10 = the image width
    ((10, 30), (12, 1, 31, 20), (10, -1, 22)),
    # the same transposed: y0 = 10 = the image height
    ((30, 10), (1, 12, 20, 31), (-1, 10, 22)),
])
def test_crop_box_starting_just_past_the_image_misses_it(image_size, bbox, box):
    """A square box whose first column (row) is the image width (height) has no pixel of the image (§9)."""
    assert asic_square_box(bbox) == box
    with pytest.raises(DatasetError, match=f"misses the {image_size[0]}×{image_size[1]} image"):
        asic_crop(Image.new("RGB", image_size, (1, 2, 3)), bbox)


# --- CUB: the loader on a two-image class ------------------------------------------------------------

def _cub_two_images(root):
    """Class 001 with two test images: id 1 is 40×30 with part 2 hidden, id 2 is 36×48 with part 5 hidden."""
    folder = root / "images" / ALBATROSS
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 50, 50)).save(folder / "Black_footed_Albatross_0001.jpg")
    Image.new("RGB", (36, 48), (50, 50, 200)).save(folder / "Black_footed_Albatross_0002.jpg")
    _write_split(root, [
        {"id": 1.0, "rel_path": f"{ALBATROSS}/Black_footed_Albatross_0001.jpg", "bbox": _bbox(5, 4, 24, 15),
         "width": 40.0, "height": 30.0},
        {"id": 2.0, "rel_path": f"{ALBATROSS}/Black_footed_Albatross_0002.jpg", "bbox": _bbox(3, 6, 14, 33),
         "width": 36.0, "height": 48.0},
    ])
    first = [(15.0, 8.0), (0.0, 0.0), (26.0, 3.0)] + [(10.0, 10.0)] * 12
    second = [(9.0, 17.0), (10.0, 20.0), (12.0, 30.0)] + [(10.0, 10.0)] * 12
    (root / "parts").mkdir()
    (root / "parts" / "part_locs.txt").write_text(
        "\n".join(_part_lines(1, first, hidden={1}) + _part_lines(2, second, hidden={4})) + "\n")


def test_class_of_two_images_gives_both_ordered_pairs_in_crop_pixels(tmp_path):
    """Two images make the 2 ordered pairs; keypoints map by (x − (x0+1))·256/side (PROTOCOL §9)."""
    root = tmp_path / "CUB_200_2011"
    _cub_two_images(root)
    pairs = load_cub(root, classes=(1,), cache_dir=tmp_path / "cache")
    assert [p.pair_id for p in pairs] == [
        f"Black_footed_Albatross_0001-Black_footed_Albatross_0002:{ALBATROSS}",
        f"Black_footed_Albatross_0002-Black_footed_Albatross_0001:{ALBATROSS}"]
    forward, backward = pairs
    # image 1: bbox−1 = (4, 3, 23, 14), pads 1.0, 0.6 → (3, 2.4→2, 24, 14.6→15): 22 × 14 → (3, −2, 22)
    #   part 1 (15, 8) → (11·256/22, 9·256/22) = (128, 104.7…); part 3 (26, 3) → (256, 4·256/22)
    # image 2: bbox−1 = (2, 5, 13, 32), pads 0.6, 1.4 → (1.4→1, 3.6→4, 13.6→14, 33.4→33): 14 × 30 → (−7, 4, 30)
    #   part 1 (9, 17) → (15·256/30, 12·256/30) = (128, 102.4); part 3 (12, 30) → (18·256/30, 25·256/30)
    np.testing.assert_allclose(forward.src_kps[[0, 2]], [[128, 9 * 256 / 22], [256, 4 * 256 / 22]])
    np.testing.assert_allclose(forward.trg_kps[[0, 2]], [[128, 102.4], [18 * 256 / 30, 25 * 256 / 30]])
    assert forward.src_kps[1].tolist() == [0.0, 0.0] and forward.trg_kps[4].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(backward.src_kps, forward.trg_kps)
    np.testing.assert_array_equal(backward.trg_kps, forward.src_kps)
    for pair in pairs:
        assert np.flatnonzero(~pair.visible).tolist() == [1, 4]   # v_src · v_trg: part 2 hidden in 1, part 5 in 2
        assert pair.kp_ids == tuple(range(15))                    # CUB's 15 parts, 0-based, in file order
        assert pair.threshold == 256.0 and pair.src_size == pair.trg_size == (256, 256)


# --- Middlebury .flo, written byte by byte ----------------------------------------------------------

def _flo(path, width, height, values=None, extra=b""):
    """'PIEH', int32 width, int32 height, then the float32 values (u, v interleaved, row by row)."""
    payload = b"" if values is None else np.asarray(values, "<f4").tobytes()
    path.write_bytes(b"PIEH" + struct.pack("<ii", width, height) + payload + extra)
    return path


def test_one_pixel_wide_flow_is_read(tmp_path):
    """A W = 1 flow is valid: 3 rows of one (u, v) each (PROTOCOL §8)."""
    flow = read_flo(_flo(tmp_path / "a.flo", 1, 3, [1.5, -2.0, 3.0, 4.0, -5.0, 6.25]))
    assert flow.shape == (3, 1, 2)
    assert flow[:, 0].tolist() == [[1.5, -2.0], [3.0, 4.0], [-5.0, 6.25]]


def test_zero_height_flow_is_rejected_even_when_the_length_fits(tmp_path):
    """H = 0 is a non-positive size even for a file of exactly the 12 header bytes (PROTOCOL §8)."""
    with pytest.raises(DatasetError, match="non-positive flow size 2×0"):
        read_flo(_flo(tmp_path / "a.flo", 2, 0))


def test_flow_file_one_byte_too_long_is_reported_as_over_long(tmp_path):
    """12 + 2·1·2·4 = 28 bytes are needed; 29 is over-long (PROTOCOL §8)."""
    path = _flo(tmp_path / "a.flo", 2, 1, [1, 2, 3, 4], extra=b"\0")
    with pytest.raises(DatasetError) as raised:
        read_flo(path)
    assert str(raised.value) == f"{path}: over-long .flo file: 29 bytes, 2×1×2 floats need 28"


def test_truncated_flow_file_says_how_long_it_is_and_should_be(tmp_path):
    """12 + 2·2·2·4 = 44 bytes are needed; 36 is truncated (PROTOCOL §8)."""
    path = _flo(tmp_path / "a.flo", 2, 2, [0.0] * 6)
    with pytest.raises(DatasetError) as raised:
        read_flo(path)
    assert str(raised.value) == f"{path}: truncated .flo file: 36 bytes, 2×2×2 floats need 44"


def test_nonfinite_flow_is_rejected_by_default_at_its_first_pixel_row_major(tmp_path):
    """NaN/inf flow is an error unless allowed, naming the count and the first (row, column) (PROTOCOL §8)."""
    values = np.zeros((3, 4, 2), np.float32)                      # H = 3, W = 4
    values[1, 2, 0] = np.nan
    values[2, 0, 1] = np.inf
    path = _flo(tmp_path / "a.flo", 4, 3, values)
    with pytest.raises(DatasetError, match="2 pixel\\(s\\) hold NaN or infinite flow, first at row 1, column 2;"):
        read_flo(path)
    allowed = read_flo(path, allow_nonfinite=True)
    assert np.isnan(allowed[1, 2, 0]) and np.isinf(allowed[2, 0, 1])


# --- TSS: a hand-made pair folder ---------------------------------------------------------------------

def _png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _tss_folder(root, flow2=None, mask2=None):
    """TSS_CVPR2016/JODS/pair01: image1 2×2, image2 4 wide × 3 tall, GT flows on each target grid."""
    folder = root / "JODS" / "pair01"
    folder.mkdir(parents=True)
    _png(folder / "image1.png", np.full((2, 2, 3), 60))
    _png(folder / "image2.png", np.full((3, 4, 3), 180))
    _flo(folder / "flow1.flo", 2, 2, np.full((2, 2, 2), 0.5, np.float32))            # on image1's grid
    _flo(folder / "flow2.flo", 4, 3, np.full((3, 4, 2), -0.5, np.float32) if flow2 is None else flow2)
    _png(folder / "mask1.png", np.full((2, 2), 255))
    _png(folder / "mask2.png", np.full((3, 4), 255) if mask2 is None else mask2)
    return folder


def test_l_pck_is_the_longer_side_of_the_unpadded_source_image(tmp_path):
    """L_pck = max(H_src, W_src): 2 for the 2×2 image1, 4 for the 4×3 image2 (PROTOCOL §8)."""
    root = tmp_path / "TSS_CVPR2016"
    _tss_folder(root)
    forward, backward = (read_sample(s) for s in load_tss(root, ("JODS",)))
    assert forward.l_pck == 2.0 and backward.l_pck == 4.0
    assert forward.src.shape == forward.trg.shape == (3, 4, 3)
    assert not forward.src[2:].any() and not forward.src[:, 2:].any()   # image1 zero-padded right and bottom


def test_flow_of_exactly_1e9_at_a_valid_pixel_is_known(tmp_path):
    """Middlebury's unknown flow is strictly above 1e9; 1e9 itself is a flow value (PROTOCOL §8)."""
    flow2 = np.zeros((3, 4, 2), np.float32)
    flow2[1, 3, 0] = 1e9                                          # exactly representable in float32
    root = tmp_path / "TSS_CVPR2016"
    _tss_folder(root, flow2=flow2)
    data = read_sample(load_tss(root, ("JODS",))[0])
    assert data.flow[1, 3].tolist() == [1e9, 0.0] and data.mask[1, 3]


def test_unknown_flow_at_a_valid_pixel_is_located_among_the_valid_ones(tmp_path):
    """The error names the first pixel both unknown and valid, not the first valid one (PROTOCOL §8)."""
    flow2 = np.zeros((3, 4, 2), np.float32)
    flow2[1, 2, 1] = np.nan                                       # unknown, valid
    flow2[2, 3, 0] = 2e9                                          # unknown, masked out: allowed
    mask2 = np.zeros((3, 4))
    mask2[0, 0] = mask2[1, 2] = 255
    root = tmp_path / "TSS_CVPR2016"
    _tss_folder(root, flow2=flow2, mask2=mask2)
    with pytest.raises(DatasetError, match=r"at 1 pixel\(s\) that mask2\.png marks valid, first at row 1, column 2$"):
        read_sample(load_tss(root, ("JODS",))[0])


@pytest.mark.parametrize("damaged", ["image1.png", "mask2.png"])
def test_damaged_source_or_mask_names_the_verify_command(tmp_path, damaged):
    """A damaged source image or mask says how to fetch and verify the TSS folder (PROTOCOL §11)."""
    root = tmp_path / "TSS_CVPR2016"
    folder = _tss_folder(root)
    (folder / damaged).write_bytes(b"not a png")
    with pytest.raises(DatasetError) as raised:
        read_sample(load_tss(root, ("JODS",))[0])                 # image1 → image2: source image1, mask2
    message = str(raised.value)
    assert f"{folder / damaged}" in message
    assert message.endswith(f"(see data_manifests/tss.yaml; get it with: sdfuse data fetch tss --root {tmp_path}; "
                            f"list what is damaged with: sdfuse data verify tss --root {tmp_path}).")
