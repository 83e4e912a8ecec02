"""Matching your own images from Python: sdfuse.match and sdfuse.describe on the smoke profile.

Expected values are computed here by other routes: the lower-level pieces with the nearest
neighbour and cell centres by hand, and describe's per-image PCA by a numpy SVD.
"""
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import sdfuse
from sdfuse import api
from sdfuse.errors import ConfigError, DatasetError, WeightsNotFoundError
from sdfuse.profiles.runs import resolve
from sdfuse.protocol.fusion import assemble_sd, co_pca_layers, fuse
from sdfuse.protocol.geometry import map_keypoints, unmap_keypoints

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(matplotlib.get_data_path()) / "sample_data"
POINTS = np.array([[60.0, 50.0], [250.0, 300.0], [500.0, 590.0], [0.0, 0.0]])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """Two photographs: matplotlib's Grace Hopper (512×600, portrait) and a mirrored landscape crop of it (JPEG)."""
    folder = tmp_path_factory.mktemp("photos")
    b = folder / "hopper_view.jpg"
    with Image.open(SAMPLE / "grace_hopper.jpg") as photo:
        ImageOps.mirror(photo).crop((0, 100, 512, 400)).save(b, quality=92)
    return SAMPLE / "grace_hopper.jpg", b


@pytest.fixture(scope="module")
def run(smoke_root):
    return resolve("smoke", progress=False)


def descriptors_by_hand(run, a, b):
    """The pair's fused descriptors from the lower-level pieces (PROTOCOL §3.1, §4, §5.1)."""
    dims = {layer: run.pca_dim for layer in (2, 5, 8)}
    sd_a, sd_b = co_pca_layers(run.sd_features.get(a), run.sd_features.get(b), dims)
    return [fuse(assemble_sd(sd, (2, 5, 8), run.grid), run.dino_features.get(path)[11].flatten(1).T, 0.5)
            for sd, path in ((sd_a, a), (sd_b, b))]


def points_by_hand(run, a, b, points):
    """Cell int(x·G/14G) of each point, cosine argmax over B's cells, cell centre 14p + 6.5, back to B's pixels."""
    grid, frame = run.grid, 14 * run.grid
    desc_a, desc_b = (d.double().numpy() for d in descriptors_by_hand(run, a, b))
    size_a, size_b = Image.open(a).size, Image.open(b).size
    cells = np.trunc(map_keypoints(points, *size_a, frame) * grid / frame).astype(int)
    query = desc_a[cells[:, 1] * grid + cells[:, 0]]
    similarity = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        desc_b / np.linalg.norm(desc_b, axis=1, keepdims=True)).T
    best = similarity.argmax(axis=1)
    centres = np.stack([best % grid, best // grid], axis=1) * 14 + 6.5
    return unmap_keypoints(centres, *size_b, frame)


def test_match_equals_the_lower_level_pieces(run, photos):
    a, b = photos
    assert np.allclose(sdfuse.match(a, b, POINTS, run=run), points_by_hand(run, a, b, POINTS))


def test_match_takes_pil_images_and_arrays_like_paths(run, photos):
    a, b = photos
    expected = sdfuse.match(a, b, POINTS, run=run)
    pil = Image.open(b)
    array = np.asarray(Image.open(b).convert("RGB"))
    assert np.array_equal(sdfuse.match(a, pil, POINTS, run=run), expected)
    assert np.array_equal(sdfuse.match(a, array, POINTS, run=run), expected)
    assert np.array_equal(sdfuse.match(a, array / 255.0, POINTS, run=run), expected)
    stored = [np.asarray(Image.open(path)) for path in (run.derived_dir / "inputs").rglob("*.png")]
    assert sum(s.shape == array.shape and np.array_equal(s, array) for s in stored) == 1


def test_matching_an_image_with_itself_lands_in_the_points_own_cell(run, photos):
    a, _ = photos
    predicted = sdfuse.match(a, a, POINTS, run=run)
    half_cell = 7 * 600 / (14 * run.grid)                  # half of a 14-px cell, in A's pixels (scale 168/600)
    assert np.abs(predicted - POINTS).max() <= half_cell + 1e-9


def test_describe_is_the_fused_per_image_pca(run, photos):
    """SD half: Gram matrix of a per-layer PCA computed by numpy's SVD (rotation-free); DINO half: block 11."""
    a, _ = photos
    got = sdfuse.describe(a, run=run)
    grid, dim = run.grid, run.pca_dim
    assert got.shape == (grid, grid, 3 * dim + 48) and got.dtype == np.float32
    maps = run.sd_features.get(a)
    reduced = {}
    for layer in (2, 5, 8):
        channels, h, w = maps[layer].shape
        x = maps[layer].reshape(channels, -1).T.double().numpy()
        x -= x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        reduced[layer] = torch.from_numpy((x @ vt[:dim].T).T.reshape(-1, h, w))
    sd = assemble_sd(reduced, (2, 5, 8), grid)
    sd = 0.5 * sd / sd.norm(dim=1, keepdim=True)
    dino = run.dino_features.get(a)[11].flatten(1).T.double()
    flat = torch.from_numpy(got.reshape(grid * grid, -1)).double()
    sd_got, dino_got = flat[:, :3 * dim], flat[:, 3 * dim:]
    assert torch.allclose(sd_got @ sd_got.T, sd @ sd.T, atol=1e-4)
    assert torch.allclose(dino_got, 0.5 * dino / dino.norm(dim=1, keepdim=True), atol=1e-6)


def test_describe_of_an_in_memory_image_equals_the_file(run, photos):
    a, _ = photos
    assert np.array_equal(sdfuse.describe(Image.open(a), run=run), sdfuse.describe(a, run=run))


@pytest.mark.parametrize("image, message", [
    (np.zeros((4, 4, 2), np.uint8), "must be (H, W), (H, W, 3) or (H, W, 4)"),
    (np.zeros((4, 4), np.int16), "uint8 or float in [0, 1]"),
    (np.full((4, 4, 3), 2.0), "finite values in [0, 1]"),
    (np.zeros((1, 9, 3), np.uint8), "at least 2 pixels per side"),
    ([[1, 2], [3, 4]], "a path, a PIL image or a numpy array"),
])
def test_bad_in_memory_images_are_rejected(run, photos, image, message):
    with pytest.raises(DatasetError if "pixels per side" in message else ConfigError, match=re.escape(message)):
        sdfuse.match(photos[0], image, POINTS, run=run)


@pytest.mark.parametrize("points, message", [
    ([[512.0, 10.0]], "point 1 (512, 10) is outside image A (512×600 px)"),
    ([[10.0, 10.0], [-1.0, 10.0]], "point 2 (-1, 10) is outside image A"),
    ([[np.nan, 10.0]], "point 1 (nan, 10) is outside"),
    ([], "non-empty list of (x, y) pairs"),
    ([1.0, 2.0], "non-empty list of (x, y) pairs"),
    ([["a", "b"]], "must be (x, y) number pairs"),
])
def test_bad_points_are_rejected_before_any_extraction(photos, tmp_path, points, message):
    run = resolve("smoke", cache_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=re.escape(message)):
        sdfuse.match(photos[0], photos[1], points, run=run)
    assert run.sd_features.forward_passes == 0 and not run.sd_features.folder.exists()


def test_run_options_are_checked(smoke_root, photos):
    with pytest.raises(ConfigError, match=r"unknown run parameter\(s\) \['gird'\]"):
        sdfuse.match(*photos, POINTS, profile="smoke", gird=12)
    with pytest.raises(ConfigError, match="either run=... or profile"):
        sdfuse.match(*photos, POINTS, run=resolve("smoke", progress=False), grid=8)


def test_missing_paper_weights_say_how_to_try_smoke(photos, tmp_path):
    with pytest.raises(WeightsNotFoundError) as error:
        sdfuse.match(*photos, POINTS, cache_dir=tmp_path, device="cpu")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in str(error.value) and "profile='smoke'" in str(error.value)


def test_match_points_is_a_deprecated_alias(run, photos):
    with pytest.warns(DeprecationWarning, match="use sdfuse.match"):
        old = api.match_points(*photos, POINTS, run)
    assert np.array_equal(old, sdfuse.match(*photos, POINTS, run=run))


def test_import_sdfuse_does_not_import_torch():
    code = "import sys, sdfuse; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert sdfuse.match is api.match and sdfuse.describe is api.describe and "describe" in dir(sdfuse)


def test_the_readme_example_runs(run, photos, tmp_path, monkeypatch):
    """The README's library example, verbatim, on the smoke profile with two photographs as a.jpg and b.jpg."""
    section = (ROOT / "README.md").read_text().split("## Using the library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    assert len([line for line in code.splitlines() if line.strip()]) == 3
    Image.open(photos[0]).save(tmp_path / "a.jpg", quality=95)
    Image.open(photos[1]).save(tmp_path / "b.jpg", quality=95)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(api, "DEFAULT_PROFILE", "smoke")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["points_b"].shape == (2, 2)
    assert namespace["descriptors"].shape == (run.grid, run.grid, 3 * run.pca_dim + 48)
    assert np.allclose(namespace["points_b"], points_by_hand(run, "a.jpg", "b.jpg", np.array([[120, 80], [200, 150]])))


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 500), (400, 400)])
def test_unmap_inverts_map(size):
    points = np.array([[0.0, 0.0], [12.5, 99.0], [size[0] - 1, size[1] - 1]])
    assert np.allclose(unmap_keypoints(map_keypoints(points, *size, 840), *size, 840), points)
