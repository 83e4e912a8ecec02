"""Fuzzing every annotation parser with corrupted inputs (hypothesis, derandomized, bounded).

Each corrupted input must either parse into valid structures (finite coordinates inside their
image, consistent lengths, positive thresholds) or raise the project's own DatasetError, never
another exception and never a silently wrong value.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdfuse.data.datasets.cub import NUM_PARTS, read_part_locs
from sdfuse.data.datasets.flo import read_flo, write_flo
from sdfuse.data.datasets.pairs import Pair
from sdfuse.data.datasets.pfpascal import PF_PASCAL_CLASSES, load_pfpascal
from sdfuse.data.datasets.spair import read_pair
from sdfuse.errors import DatasetError

FUZZ = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- corruptions -----------------------------------------------------------------------------------------

NASTY_NUMBERS = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1, -1e-9, 0, 1e308, 1e-320,
                                 2 ** 63, -2 ** 63, 10 ** 30, 0.5, 3.0, True, False])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NASTY_NUMBERS | st.integers(-10 ** 6, 10 ** 6)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12)


@st.composite
def corrupt_bytes(draw, data: bytes) -> bytes:
    """Truncate, flip, insert or delete bytes of ``data`` (one to three edits)."""
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "truncate":
            data = data[:at]
        elif action == "flip" and data:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif action == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif data:
            data = data[:at] + data[at + draw(st.integers(1, 8)):]
    return data


@st.composite
def corrupt_text(draw, text: str, tokens: list[str]) -> str:
    """Replace, drop or duplicate lines and fields with nasty tokens; sometimes corrupt the bytes too."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["token", "drop_line", "dup_line", "bytes"]))
        if action == "token":
            sep = "," if "," in lines[row] else " "
            cells = lines[row].split(sep)
            cell = draw(st.integers(0, len(cells)))
            new = draw(st.sampled_from(tokens) | st.text(max_size=6))
            cells[cell:cell + draw(st.integers(0, 1))] = [new]
            lines[row] = sep.join(cells)
        elif action == "drop_line":
            lines.pop(row) if len(lines) > 1 else None
        elif action == "dup_line":
            lines.insert(row, lines[row])
        else:
            raw = draw(corrupt_bytes("\n".join(lines).encode()))
            return raw.decode("utf-8", errors="surrogateescape")
    return "\n".join(lines)


TOKENS = ["nan", "NaN", "inf", "-inf", "1e400", "-1", "-1;-1", "", ";", ";;", "0", "1e-400", "abc", "9" * 5000,
          "3.5", "-0", "1_0", " ", "2.0;nan", "1;2;3"]


def _write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))


# --- SPair-71k pair JSON -----------------------------------------------------------------------------------

def _check_pair(pair: Pair) -> None:
    n = len(pair.kp_ids)
    assert n >= 1 and len(set(pair.kp_ids)) == n
    for kps, (width, height) in ((pair.src_kps, pair.src_size), (pair.trg_kps, pair.trg_size)):
        assert kps.shape == (n, 2) and kps.dtype == np.float64 and np.isfinite(kps).all()
        assert width >= 1 and height >= 1
        assert ((kps >= 0) & (kps <= [width, height])).all()
    assert pair.visible.shape == (n,) and pair.visible.dtype == bool
    assert math.isfinite(pair.threshold) and pair.threshold > 0
    assert pair.src_image.parent == pair.trg_image.parent and pair.src_image.parent.name == pair.category


@pytest.fixture(scope="module")
def spair(smoke_root, tmp_path_factory):
    """A pair JSON and a copy of its category's images (the loader checks the images' sizes)."""
    source = sorted((smoke_root / "SPair-71k" / "PairAnnotation" / "test").glob("*:present.json"))[0]
    folder = tmp_path_factory.mktemp("spair_fuzz")
    shutil.copytree(smoke_root / "SPair-71k" / "JPEGImages" / "present", folder / "SPair-71k" / "JPEGImages" / "present")
    return json.loads(source.read_text()), source.name, folder


@st.composite
def corrupt_pair(draw, data: dict) -> str:
    data = json.loads(json.dumps(data))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(data) + ["kps_ids"]))
        action = draw(st.sampled_from(["value", "delete", "point", "append"]))
        if action == "value":
            data[key] = draw(JSON_VALUES)
        elif action == "delete":
            data.pop(key, None)
        elif action == "point" and isinstance(data.get(key), list) and data[key]:
            item = draw(st.integers(0, len(data[key]) - 1))
            if isinstance(data[key][item], list) and data[key][item]:
                data[key][item][draw(st.integers(0, len(data[key][item]) - 1))] = draw(NASTY_NUMBERS | JSON_VALUES)
            else:
                data[key][item] = draw(JSON_VALUES)
        elif isinstance(data.get(key), list):
            data[key].append(draw(JSON_VALUES))
    text = json.dumps(data, allow_nan=True)
    if draw(st.booleans()):
        text = draw(corrupt_bytes(text.encode())).decode("utf-8", errors="surrogateescape")
    return text


@FUZZ
@given(st.data())
def test_fuzz_spair_pair_json(spair, data):
    original, name, folder = spair
    path = folder / name
    _write(path, data.draw(corrupt_pair(original)))
    try:
        pair = read_pair(path, folder / "SPair-71k")
    except DatasetError as error:
        assert str(path) in str(error)
        return
    _check_pair(pair)


# --- PF-Pascal CSV ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pfpascal(smoke_root, tmp_path_factory):
    data = tmp_path_factory.mktemp("pf_fuzz")
    root = data / "PF-dataset-PASCAL"
    root.mkdir()
    shutil.copytree(smoke_root / "PF-dataset-PASCAL" / "JPEGImages", root / "JPEGImages")   # a link out is refused
    text = (smoke_root / "PF-dataset-PASCAL" / "test_pairs_pf_pascal.csv").read_text()
    return root, "\n".join(text.split("\n")[:7]) + "\n"            # header and six pairs: enough to mutate


@FUZZ
@given(st.data())
def test_fuzz_pfpascal_csv(pfpascal, data):
    root, original = pfpascal
    path = root / "test_pairs_pf_pascal.csv"
    _write(path, data.draw(corrupt_text(original, TOKENS)))
    try:
        pairs = load_pfpascal(root)
    except DatasetError as error:
        assert str(path) in str(error)
        return
    assert pairs
    for pair in pairs:
        n = len(pair.kp_ids)
        assert pair.category in PF_PASCAL_CLASSES
        assert pair.src_kps.shape == pair.trg_kps.shape == (n, 2) and pair.visible.shape == (n,)
        assert np.isfinite(pair.src_kps).all() and np.isfinite(pair.trg_kps).all()
        for kps, (width, height) in ((pair.src_kps, pair.src_size), (pair.trg_kps, pair.trg_size)):
            shown = kps[pair.visible]
            assert ((shown >= 0) & (shown <= [width, height])).all()
        assert pair.threshold == max(pair.trg_size) > 0
        assert pair.src_image.is_file() and pair.trg_image.is_file()
        assert root.parent in pair.src_image.parents and root.parent in pair.trg_image.parents


# --- Middlebury .flo -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flo_fuzz")
    flow = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2) - 7.5
    return write_flo(folder / "base.flo", flow).read_bytes(), folder / "fuzz.flo"


@st.composite
def flo_with_values(draw, magic: bytes) -> bytes:
    """A well-formed header and exactly W·H·2 float32 values, any of which may be NaN or infinite."""
    width, height = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    values = draw(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True),
                           min_size=2 * width * height, max_size=2 * width * height))
    return magic + np.array([width, height], "<i4").tobytes() + np.array(values, "<f4").tobytes()


@FUZZ
@given(st.data())
def test_fuzz_flo(flo, data):
    original, path = flo
    raw = data.draw(corrupt_bytes(original) | st.binary(max_size=64) | flo_with_values(original[:4])
                    | st.builds(lambda w, h, body: original[:4] + np.array([w, h], "<i4").tobytes() + body,
                                st.integers(-3, 6), st.integers(-3, 6), st.binary(max_size=200)))
    path.write_bytes(raw)
    try:
        flow = read_flo(path)
    except DatasetError as error:
        assert str(path) in str(error)
        return
    width, height = (int(v) for v in np.frombuffer(raw, "<i4", count=2, offset=4))
    assert flow.shape == (height, width, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all() and len(raw) == 12 + flow.nbytes


# --- CUB part_locs.txt ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def part_locs(smoke_root, tmp_path_factory):
    lines = (smoke_root / "CUB_200_2011" / "parts" / "part_locs.txt").read_text().split("\n")
    return "\n".join(lines[: 3 * NUM_PARTS]) + "\n", tmp_path_factory.mktemp("cub_fuzz") / "part_locs.txt"


@FUZZ
@given(st.data())
def test_fuzz_cub_part_locs(part_locs, data):
    original, path = part_locs
    _write(path, data.draw(corrupt_text(original, TOKENS + ["16", "2", "0.0", "1 2 3 4 5 6"])))
    try:
        parts = read_part_locs(path, {1, 2, 3})
    except DatasetError as error:
        assert str(path) in str(error)
        return
    assert set(parts) == {1, 2, 3}
    for points, visible in parts.values():
        assert points.shape == (NUM_PARTS, 2) and np.isfinite(points).all() and (points >= 0).all()
        assert visible.shape == (NUM_PARTS,) and visible.dtype == bool


def test_fuzz_inputs_are_really_corrupted(spair, pfpascal, flo, part_locs):
    """Sanity check of the harness: the unmodified inputs parse, so rejections come from the corruptions."""
    original, name, folder = spair
    _write(folder / name, json.dumps(original))
    _check_pair(read_pair(folder / name, folder / "SPair-71k"))
    root, text = pfpascal
    _write(root / "test_pairs_pf_pascal.csv", text)
    assert len(load_pfpascal(root)) == 6
    raw, path = flo
    path.write_bytes(raw)
    assert read_flo(path).shape == (3, 4, 2)
    text, path = part_locs
    _write(path, text)
    assert set(read_part_locs(path, {1, 2, 3})) == {1, 2, 3}
