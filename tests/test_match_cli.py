"""``sdfuse match`` on two photographs (smoke profile): printed points, the picture, JSON, errors."""
import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfuse.book import viz
from sdfuse.cli import main
from sdfuse.profiles.runs import resolve

from .test_api import descriptors_by_hand, photos, points_by_hand  # noqa: F401 - photos is a fixture

POINTS = "60,50;250,300;500,590"


@pytest.fixture(scope="module")
def run(smoke_root):
    return resolve("smoke", progress=False)


def _csv(text: str) -> np.ndarray:
    lines = text.strip().splitlines()
    assert lines[0] == "a_x,a_y,b_x,b_y"
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def _panel_width(path: Path) -> int:
    with Image.open(path) as image:
        return round(image.width * viz.PANEL_PX / image.height)


def test_match_prints_the_librarys_points_and_writes_the_picture(run, photos, tmp_path, capsys):
    a, b = photos
    out = tmp_path / "match.png"
    assert main(["match", str(a), str(b), "--profile", "smoke", "--points", POINTS, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    table = _csv(captured.out)
    points = np.array([[60, 50], [250, 300], [500, 590]], dtype=float)
    assert np.array_equal(table[:, :2], points)
    assert np.abs(table[:, 2:] - points_by_hand(run, a, b, points)).max() <= 0.005
    assert f"wrote {out}" in captured.err
    with Image.open(out) as picture:
        picture.load()
        assert picture.format == "PNG"
        assert picture.size == (_panel_width(a) + viz.GAP_PX + _panel_width(b), viz.PANEL_PX + viz.CAPTION_PX)


def test_json_without_points_gives_the_4x4_lattice(run, photos, tmp_path, capsys):
    a, b = photos
    out = tmp_path / "lattice.png"
    assert main(["match", str(a), str(b), "--profile", "smoke", "--json", "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"a", "b", "profile", "grid", "alpha", "picture", "points"}
    assert record["a"] == {"path": str(a), "width": 512, "height": 600}
    assert record["b"] == {"path": str(b), "width": 512, "height": 300}
    assert (record["profile"], record["grid"], record["alpha"], record["picture"]) == ("smoke", 12, 0.5, str(out))
    lattice = [[(i + 0.5) * 512 / 4, (j + 0.5) * 600 / 4] for j in range(4) for i in range(4)]
    assert [p["a"] for p in record["points"]] == lattice
    predicted = np.array([p["b"] for p in record["points"]])
    assert all(isinstance(v, float) for p in record["points"] for v in p["a"] + p["b"])
    assert np.allclose(predicted, points_by_hand(run, a, b, np.array(lattice)))


def test_dense_picture_shows_every_b_cell_in_the_colour_of_its_match(run, photos, tmp_path, capsys):
    """The middle panel of the second row, sampled at cell centres, against a nearest neighbour by hand."""
    a, b = photos
    out = tmp_path / "dense.png"
    assert main(["match", str(a), str(b), "--profile", "smoke", "--dense", "--points", "10,10", "--out", str(out)]) == 0
    picture = np.asarray(Image.open(out).convert("RGB"))
    panel, gap, caption = viz.PANEL_PX, viz.GAP_PX, viz.CAPTION_PX
    assert picture.shape == (2 * (panel + caption) + gap, max(_panel_width(a) + gap + _panel_width(b),
                                                              3 * panel + 2 * gap), 3)
    desc_a, desc_b = (d.double().numpy() for d in descriptors_by_hand(run, a, b))
    desc_a /= np.linalg.norm(desc_a, axis=1, keepdims=True)
    desc_b /= np.linalg.norm(desc_b, axis=1, keepdims=True)
    nearest = (desc_b @ desc_a.T).argmax(axis=1)
    grid, cell = run.grid, panel // run.grid
    top, left = panel + caption + gap, panel + gap
    for index in range(grid * grid):
        row, col = divmod(index, grid)
        src_row, src_col = divmod(int(nearest[index]), grid)
        x, y = src_col / (grid - 1), src_row / (grid - 1)
        expected = np.round(255 * np.array([x, y, 1 - x]))
        shown = picture[top + row * cell + cell // 2, left + col * cell + cell // 2]
        assert np.abs(shown.astype(int) - expected).max() <= 1, (row, col)


def _no_file_written(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _bad_inputs(photos, tmp_path):
    a, b = (str(p) for p in photos)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(a).read_bytes()[:3000])
    return {
        "missing A": ([str(tmp_path / "nope.jpg"), b], "image A: ", "is not a file"),
        "missing B": ([a, str(tmp_path / "nope.jpg")], "image B: ", "is not a file"),
        "not an image": ([a, str(text)], "cannot read image", "not an image"),
        "truncated": ([str(truncated), b], "cannot read image", "truncated"),
        "point outside A": ([a, b, "--points", "10,10;512,20"], "point 2 (512, 20) is outside image A (512×600 px)", ""),
        "negative point": ([a, b, "--points=-1,5"], "point 1 (-1, 5) is outside image A", ""),
        "one number": ([a, b, "--points", "1;2"], "--points must be 'x,y;x,y;...'", "item 1 '1' is not two numbers"),
        "trailing ;": ([a, b, "--points", "1,2;"], "--points must be", "item 2 '' is not two numbers"),
        "three numbers": ([a, b, "--points", "1,2,3"], "--points must be", "is not two numbers"),
        "nan": ([a, b, "--points", "nan,3"], "--points must be", "'nan,3' is not two numbers"),
        "empty": ([a, b, "--points", ""], "--points must be", "item 1 '' is not two numbers"),
        "alpha": ([a, b, "--alpha", "1.5"], "alpha must be in [0, 1]", ""),
        "parameter": ([a, b, "-p", "gird=12"], "unknown run parameter(s) ['gird']", ""),
        "grid": ([a, b, "-p", "grid=10"], "grid must be a multiple of 4", ""),
        "suffix": ([a, b, "--out", str(tmp_path / "out" / "match.gif")], "its suffix must be .png", ""),
    }


@pytest.mark.parametrize("case", ["missing A", "missing B", "not an image", "truncated", "point outside A",
                                  "negative point", "one number", "trailing ;", "three numbers", "nan", "empty",
                                  "alpha", "parameter", "grid", "suffix"])
def test_bad_input_exits_2_with_an_error_and_writes_nothing(smoke_root, photos, tmp_path, capsys, case):
    argv, first, second = _bad_inputs(photos, tmp_path)[case]
    out = tmp_path / "out"
    profile = [] if "--profile" in argv else ["--profile", "smoke"]
    target = [] if "--out" in argv else ["--out", str(out / "match.png")]
    assert main(["match", *argv, *profile, *target, "-p", f"cache_dir='{tmp_path / 'cache'}'"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and first in captured.err and second in captured.err, captured.err
    assert captured.out == "" and _no_file_written(out)
    assert _no_file_written(tmp_path / "cache" / "derived")


def test_an_unknown_profile_is_refused_by_the_parser(photos, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["match", *map(str, photos), "--profile", "huge"])
    assert exit_info.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err


def test_missing_weights_say_how_to_get_them_and_how_to_try_smoke(photos, tmp_path, capsys):
    a, b = (str(p) for p in photos)
    out = tmp_path / "out" / "match.png"
    assert main(["match", a, b, "--out", str(out), "-p", "device='cpu'", "-p", f"cache_dir='{tmp_path}'"]) == 2
    err = capsys.readouterr().err
    assert "\nerror: Cannot load the sd weights 'stable-diffusion-v1-5/stable-diffusion-v1-5'" in "\n" + err
    assert "huggingface-cli download" in err and "-p sd_model=" in err
    assert f"sdfuse match {a} {b} --profile smoke" in err
    assert not out.parent.exists()


def test_a_failed_picture_write_leaves_nothing(run, photos, tmp_path, capsys, monkeypatch):
    """The disk fills up while the PNG is written: exit 2, no picture, no temporary file, nothing printed."""
    a, b = (str(p) for p in photos)

    def full_disk(self, fp, format=None, **params):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["match", a, b, "--profile", "smoke", "--points", "10,10", "--out", str(out / "match.png")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: the disk is full: could not write the picture")
    assert captured.out == "" and list(out.iterdir()) == []
