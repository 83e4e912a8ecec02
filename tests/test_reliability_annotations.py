"""Annotations consistent with their images and dataset folders, for all four loaders
(sdfuse.data.datasets.checks): stated image sizes equal the files', boxes are non-degenerate and inside
the image within BORDER_TOLERANCE_PX, keypoints and CUB parts inside, every path inside the dataset
folder once resolved, UTF-8 byte-order marks accepted, and derived images (CUB crops, TSS padded
pairs) keyed by their sources' content. Each case edits a copy of a smoke fixture; every rejection
is a DatasetError naming the file and the field or row.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from PIL import Image

from sdfuse.cli import main
from sdfuse.data.datasets.checks import BORDER_TOLERANCE_PX
from sdfuse.data.datasets.cub import asic_crop, load_cub
from sdfuse.data.datasets.pfpascal import load_pfpascal
from sdfuse.data.datasets.spair import load_spair, read_pair
from sdfuse.data.datasets.tss import load_tss, pad_pair, read_sample
from sdfuse.errors import DatasetError
from sdfuse.evaluation.tss import _padded_paths

BOM = b"\xef\xbb\xbf"


def _copy(smoke_root: Path, tmp_path: Path, folder: str) -> Path:
    shutil.copytree(smoke_root / folder, tmp_path / folder)
    return tmp_path / folder


def _outside_file(tmp_path: Path, like: Path) -> Path:
    """A valid image beside (not inside) the dataset folder."""
    outside = tmp_path / "elsewhere"
    outside.mkdir(exist_ok=True)
    shutil.copyfile(like, outside / like.name)
    return outside / like.name


# --- SPair-71k ---------------------------------------------------------------------------------------------

@pytest.fixture
def spair(smoke_root, tmp_path):
    """A copy of the SPair fixture and its first terrain pair file, parsed."""
    root = _copy(smoke_root, tmp_path, "SPair-71k")
    path = sorted((root / "PairAnnotation" / "test").glob("*:terrain.json"))[0]
    return SimpleNamespace(root=root, path=path, data=json.loads(path.read_text()))


def _edit(spair, change) -> None:
    data = json.loads(json.dumps(spair.data))
    change(data)
    spair.path.write_text(json.dumps(data))


def _size(spair, key):
    return tuple(spair.data[key][:2])


SPAIR_CASES = {
    "trg_bndbox far outside (PCK 100 before)": (
        lambda d: d.__setitem__("trg_bndbox", [-500, -500, 5000, 5000]), r"trg_bndbox: box .* lies outside the 224×168 image"),
    "trg_bndbox past the right border by 2 px": (
        lambda d: d.__setitem__("trg_bndbox", [10, 10, d["trg_imsize"][0] + 2, 50]), "more than 1 px beyond its border"),
    "src_bndbox outside": (lambda d: d.__setitem__("src_bndbox", [0, 0, 10, 10_000]), r"src_bndbox: box .* lies outside"),
    "zero-width trg_bndbox": (lambda d: d.__setitem__("trg_bndbox", [30, 10, 30, 90]), "is degenerate"),
    "inverted src_bndbox": (lambda d: d.__setitem__("src_bndbox", [50, 10, 20, 90]), "is degenerate"),
    "trg_imsize twice the image": (lambda d: d.__setitem__("trg_imsize", [2 * d["trg_imsize"][0], 2 * d["trg_imsize"][1], 3]),
                                   r"trg_imsize says 448×336 but terrain_01.jpg is 224×168 pixels"),
    "src_imsize with width and height swapped": (
        lambda d: d.__setitem__("src_imsize", [d["src_imsize"][1], d["src_imsize"][0], 3]),
        r"src_imsize says 160×240 but terrain_00.jpg is 240×160 pixels"),
}


@pytest.mark.parametrize("case", SPAIR_CASES, ids=list(SPAIR_CASES))
def test_spair_annotation_inconsistent_with_its_image_is_rejected(case, spair):
    change, message = SPAIR_CASES[case]
    _edit(spair, change)
    with pytest.raises(DatasetError, match=message) as raised:
        load_spair(spair.root, pairs_per_category=0)
    assert str(raised.value).startswith(f"{spair.path}: malformed SPair-71k pair annotation")
    assert "sdfuse data verify spair71k" in str(raised.value)


def test_spair_box_touching_the_border_is_accepted_within_the_tolerance(spair):
    width, height = _size(spair, "trg_imsize")
    assert (width, height) == Image.open(spair.root / "JPEGImages" / "terrain" / spair.data["trg_imname"]).size
    _edit(spair, lambda d: d.__setitem__("trg_bndbox", [-BORDER_TOLERANCE_PX, 0, width + BORDER_TOLERANCE_PX, height]))
    pair = read_pair(spair.path, spair.root)
    assert pair.threshold == width + 2 * BORDER_TOLERANCE_PX          # the longer side, no +1 (PROTOCOL §7.1)


def test_spair_symlinks_out_of_the_dataset_folder_are_refused(spair, tmp_path):
    image = spair.root / "JPEGImages" / "terrain" / spair.data["src_imname"]
    outside = _outside_file(tmp_path, image)
    image.unlink()
    image.symlink_to(outside)                                      # same bytes, but outside the folder
    with pytest.raises(DatasetError, match=rf"src_imname: {image} resolves to {outside}, outside the dataset folder"):
        read_pair(spair.path, spair.root)
    image.unlink()
    shutil.copyfile(outside, image)
    folder = spair.root / "JPEGImages" / "terrain"                 # the category folder linked out
    shutil.move(folder, tmp_path / "terrain_elsewhere")
    folder.symlink_to(tmp_path / "terrain_elsewhere")
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        load_spair(spair.root, pairs_per_category=0)


def test_spair_pair_file_linked_from_outside_is_refused(spair, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(spair.path, outside)
    spair.path.symlink_to(outside)
    with pytest.raises(DatasetError, match=rf"{spair.path} resolves to {outside}, outside the dataset folder"):
        load_spair(spair.root, pairs_per_category=0)


def test_spair_whole_folder_linked_elsewhere_is_accepted(spair, tmp_path):
    link = tmp_path / "linked" / "SPair-71k"
    link.parent.mkdir()
    link.symlink_to(spair.root)
    assert len(load_spair(link, pairs_per_category=0)) == len(load_spair(spair.root, pairs_per_category=0)) == 36


def test_spair_pair_json_with_a_byte_order_mark_is_read(spair):
    plain = read_pair(spair.path, spair.root)
    spair.path.write_bytes(BOM + spair.path.read_bytes())
    with_bom = read_pair(spair.path, spair.root)
    np.testing.assert_array_equal(with_bom.trg_kps, plain.trg_kps)
    assert (with_bom.threshold, with_bom.trg_size) == (plain.threshold, plain.trg_size)


def test_cli_bad_imsize_exits_2_with_the_field_and_writes_no_cache(spair, tmp_path, capsys):
    _edit(spair, SPAIR_CASES["trg_imsize twice the image"][0])
    cache = tmp_path / "cache"
    assert main(["extract", "-p", f"data_root='{spair.root}'", "-p", f"cache_dir='{cache}'",
                 "-p", "pairs_per_category=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spair.path}: malformed SPair-71k pair annotation: trg_imsize says 448×336")
    assert "Traceback" not in err and not cache.exists()


# --- PF-Pascal ------------------------------------------------------------------------------------------------

@pytest.fixture
def pf(smoke_root, tmp_path):
    root = _copy(smoke_root, tmp_path, "PF-dataset-PASCAL")
    return SimpleNamespace(root=root, csv=root / "test_pairs_pf_pascal.csv")


def test_pfpascal_csv_with_a_byte_order_mark_gives_the_same_pairs(pf):
    plain = load_pfpascal(pf.root)
    pf.csv.write_bytes(BOM + pf.csv.read_bytes())
    with_bom = load_pfpascal(pf.root)                              # the header is recognised, not read as row 1
    assert [p.pair_id for p in with_bom] == [p.pair_id for p in plain] and len(plain) == 9
    np.testing.assert_array_equal(with_bom[0].src_kps, plain[0].src_kps)


def _replace_path(pf, old: str, new: str) -> None:
    pf.csv.write_text(pf.csv.read_text().replace(old, new, 1))


def test_pfpascal_image_linked_out_of_the_folder_is_refused(pf, tmp_path):
    image = pf.root / "JPEGImages" / "portrait_00.jpg"
    outside = _outside_file(tmp_path, image)
    image.unlink()
    image.symlink_to(outside)
    with pytest.raises(DatasetError, match=rf"{pf.csv}, row 2: source_image: .* resolves to {outside}, outside"):
        load_pfpascal(pf.root)


def test_pfpascal_path_to_another_folder_of_the_data_root_is_refused(pf, tmp_path):
    other = tmp_path / "Other" / "JPEGImages"
    other.mkdir(parents=True)
    shutil.copyfile(pf.root / "JPEGImages" / "portrait_01.jpg", other / "portrait_01.jpg")
    _replace_path(pf, "PF-dataset-PASCAL/JPEGImages/portrait_01.jpg", "Other/JPEGImages/portrait_01.jpg")
    with pytest.raises(DatasetError, match=r"row 2: target_image: .*Other/JPEGImages/portrait_01.jpg resolves to"):
        load_pfpascal(pf.root)


def test_pfpascal_images_folder_linked_out_is_refused_and_the_whole_folder_linked_is_accepted(pf, tmp_path):
    link = tmp_path / "data" / "PF-dataset-PASCAL"
    link.parent.mkdir()
    link.symlink_to(pf.root)
    assert len(load_pfpascal(link)) == 9
    shutil.move(pf.root / "JPEGImages", tmp_path / "images_elsewhere")
    (pf.root / "JPEGImages").symlink_to(tmp_path / "images_elsewhere")
    with pytest.raises(DatasetError, match="row 2: source_image: .* outside the dataset folder"):
        load_pfpascal(pf.root)


def test_pfpascal_csv_linked_from_outside_is_refused(pf, tmp_path):
    outside = tmp_path / "pairs.csv"
    shutil.move(pf.csv, outside)
    pf.csv.symlink_to(outside)
    with pytest.raises(DatasetError, match=rf"{pf.csv} resolves to {outside}, outside the dataset folder"):
        load_pfpascal(pf.root)


# --- TSS -------------------------------------------------------------------------------------------------------

@pytest.fixture
def tss(smoke_root, tmp_path):
    return _copy(smoke_root, tmp_path, "TSS_CVPR2016")


def test_tss_file_or_pair_folder_linked_out_is_refused(tss, tmp_path):
    folder = tss / "JODS" / "terrain01"
    flow = folder / "flow1.flo"
    outside = _outside_file(tmp_path, flow)
    flow.unlink()
    flow.symlink_to(outside)
    with pytest.raises(DatasetError, match=rf"{flow} resolves to {outside}, outside the dataset folder"):
        load_tss(tss)
    flow.unlink()
    shutil.copyfile(outside, flow)
    shutil.move(folder, tmp_path / "pair_elsewhere")
    folder.symlink_to(tmp_path / "pair_elsewhere")
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        load_tss(tss)


def test_tss_padded_images_follow_their_sources_content(tss, tmp_path, caplog):
    run = SimpleNamespace(derived_dir=tmp_path / "derived")
    sample = load_tss(tss)[0]
    data = read_sample(sample)
    first = _padded_paths(run, sample, data.src, data.trg)
    assert (np.asarray(Image.open(first[0])) == data.src).all() and (np.asarray(Image.open(first[1])) == data.trg).all()
    assert _padded_paths(run, sample, data.src, data.trg) == first    # reused

    pixels = np.asarray(Image.open(sample.src_image).convert("RGB"))
    Image.fromarray(np.ascontiguousarray(pixels[::-1])).save(sample.src_image)    # same name, new content
    changed = read_sample(sample)
    second = _padded_paths(run, sample, changed.src, changed.trg)
    assert second[0] != first[0] and second[1] == first[1]
    assert (np.asarray(Image.open(second[0])) == changed.src).all()
    assert not (changed.src == data.src).all()

    damaged = bytearray(second[1].read_bytes())
    damaged[60] ^= 0xFF                                            # a flipped byte: its PNG CRC fails
    second[1].write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING):
        again = _padded_paths(run, sample, changed.src, changed.trg)
    assert again == second and "is damaged" in caplog.text
    assert (np.asarray(Image.open(again[1])) == changed.trg).all()


def test_tss_padded_pair_key_includes_the_padded_size(tss, tmp_path):
    run = SimpleNamespace(derived_dir=tmp_path / "derived")
    sample = load_tss(tss)[0]
    data = read_sample(sample)
    bigger = pad_pair(np.pad(data.src, ((0, 8), (0, 8), (0, 0))), data.trg, data.flow, data.mask)
    assert _padded_paths(run, sample, data.src, data.trg)[0] != _padded_paths(run, sample, bigger[0], bigger[1])[0]


# --- CUB -------------------------------------------------------------------------------------------------------

MAT = ("cachedir", "cub", "data", "test_cub_cleaned.mat")


@pytest.fixture
def cub(smoke_root, tmp_path):
    return _copy(smoke_root, tmp_path, "CUB_200_2011")


def _edit_record(cub: Path, index: int, field: str, value) -> None:
    mat = cub.joinpath(*MAT)
    raw = scipy.io.loadmat(mat)
    raw["images"][0, index][field] = value
    scipy.io.savemat(mat, {"images": raw["images"]})


CUB_RECORD_CASES = {
    "rel_path with ../": ("rel_path", np.array(["001.Black_footed_Albatross/../../../outside.jpg"]),
                          r"record 1: rel_path '001.Black_footed_Albatross/../../../outside.jpg' is not"),
    "absolute rel_path": ("rel_path", np.array(["/etc/001.x/passwd"]), "record 1: rel_path '/etc/001.x/passwd' is not"),
    "width not the image's": ("width", np.array([[480.0]]), r"image id 1: width × height 480×\d+ but "
                                                             r"Black_footed_Albatross_0001.jpg is \d+×\d+ pixels"),
    "bbox outside the image": ("bbox", None, r"image id 1: bbox: box .* lies outside the"),
}


@pytest.mark.parametrize("case", CUB_RECORD_CASES, ids=list(CUB_RECORD_CASES))
def test_cub_record_inconsistent_with_its_image_is_rejected(case, cub, tmp_path):
    field, value, message = CUB_RECORD_CASES[case]
    if field == "bbox":
        raw = scipy.io.loadmat(cub.joinpath(*MAT))
        value = raw["images"][0, 0]["bbox"]
        value[0, 0]["x2"] = np.array([[5000.0]])
    _edit_record(cub, 0, field, value)
    outside = tmp_path / "outside.jpg"                             # where the '../' path leads: a readable image
    shutil.copyfile(cub / "images" / "001.Black_footed_Albatross" / "Black_footed_Albatross_0001.jpg", outside)
    with pytest.raises(DatasetError, match=message) as raised:
        load_cub(cub, cache_dir=tmp_path / "cache")
    assert "test_cub_cleaned.mat" in str(raised.value)


def test_cub_repeated_image_id_is_rejected(cub, tmp_path):
    _edit_record(cub, 2, "id", np.array([[1.0]]))
    with pytest.raises(DatasetError, match="record 3: image id 1 repeats record 1"):
        load_cub(cub, cache_dir=tmp_path / "cache")


def test_cub_part_outside_its_image_is_rejected(cub, tmp_path):
    path = cub / "parts" / "part_locs.txt"
    lines = path.read_text().split("\n")
    assert lines[1].startswith("1 2 ") and lines[1].endswith(" 1")
    lines[1] = "1 2 9999.0 50.2 1"
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"part_locs.txt: part 2 of image id 1 at \[9999.0, 50.2\] lies outside "
                                           r"Black_footed_Albatross_0001.jpg"):
        load_cub(cub, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("parts", [MAT, ("parts", "part_locs.txt")], ids=["split file", "part_locs.txt"])
def test_cub_annotation_file_linked_from_outside_is_refused(parts, cub, tmp_path):
    path = cub.joinpath(*parts)
    outside = tmp_path / path.name
    shutil.move(path, outside)
    path.symlink_to(outside)
    with pytest.raises(DatasetError, match=rf"{path} resolves to {outside}, outside the dataset folder"):
        load_cub(cub, cache_dir=tmp_path / "cache")


def test_cub_image_linked_out_is_refused(cub, tmp_path):
    image = cub / "images" / "001.Black_footed_Albatross" / "Black_footed_Albatross_0001.jpg"
    outside = _outside_file(tmp_path, image)
    image.unlink()
    image.symlink_to(outside)
    with pytest.raises(DatasetError, match=rf"image id 1: {image} resolves to {outside}, outside the dataset folder"):
        load_cub(cub, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("content", [b"", b"MATLAB 5.0 MAT-file" + b"\x00" * 40, b"hello world" * 20, "half"],
                         ids=["0 bytes", "header only", "not a mat file", "truncated"])
def test_cub_damaged_split_file_is_a_clear_error(content, cub, tmp_path):
    mat = cub.joinpath(*MAT)
    mat.write_bytes(mat.read_bytes()[: mat.stat().st_size // 2] if content == "half" else content)
    with pytest.raises(DatasetError, match=rf"{mat}: not a readable CMR/ACSM split file .* unpack cachedir.tar.gz again"):
        load_cub(cub, cache_dir=tmp_path / "cache")


def test_cub_part_locs_with_a_byte_order_mark_is_read(cub, tmp_path):
    plain = load_cub(cub, classes=(1,), cache_dir=tmp_path / "cache")
    path = cub / "parts" / "part_locs.txt"
    path.write_bytes(BOM + path.read_bytes())
    with_bom = load_cub(cub, classes=(1,), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(with_bom[0].src_kps, plain[0].src_kps)


def test_cub_crops_follow_their_sources_content(cub, tmp_path):
    cache = tmp_path / "cache"
    first = load_cub(cub, classes=(1,), cache_dir=cache)
    image = cub / "images" / "001.Black_footed_Albatross" / "Black_footed_Albatross_0001.jpg"
    pixels = np.asarray(Image.open(image).convert("RGB"))
    Image.fromarray(np.ascontiguousarray(255 - pixels)).save(image, quality=95)  # same name, new content
    second = load_cub(cub, classes=(1,), cache_dir=cache)
    assert second[0].src_image != first[0].src_image and second[-1].src_image == first[-1].src_image
    raw = scipy.io.loadmat(cub.joinpath(*MAT), struct_as_record=False, squeeze_me=True)["images"][0]
    box = tuple(float(getattr(raw.bbox, k)) for k in ("x1", "y1", "x2", "y2"))
    expected = np.asarray(asic_crop(Image.open(image).convert("RGB"), box)[0])
    assert (np.asarray(Image.open(second[0].src_image)) == expected).all()


def test_the_synthetic_fixtures_pass_every_check(smoke_root, tmp_path):
    assert len(load_spair(smoke_root / "SPair-71k", pairs_per_category=0)) == 36
    assert len(load_pfpascal(smoke_root / "PF-dataset-PASCAL")) == 9
    assert len(load_tss(smoke_root / "TSS_CVPR2016")) == 8
    assert len(load_cub(smoke_root / "CUB_200_2011", cache_dir=tmp_path)) == 18
