"""Matching your own images: point mapping round trip and one-call matching on the smoke profile."""
import numpy as np
import pytest

from sdfuse.api import match_points
from sdfuse.geometry import map_keypoints, unmap_keypoints
from sdfuse.profiles import resolve


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 500), (400, 400)])
def test_unmap_inverts_map(size):
    points = np.array([[0.0, 0.0], [12.5, 99.0], [size[0] - 1, size[1] - 1]])
    assert np.allclose(unmap_keypoints(map_keypoints(points, *size, 840), *size, 840), points)


def test_match_points_on_the_smoke_profile(smoke_root, tmp_path):
    run = resolve("smoke", cache_dir=tmp_path, progress=False)
    images = smoke_root / "SPair-71k" / "JPEGImages" / "terrain"
    a, b = images / "terrain_00.jpg", images / "terrain_00.jpg"
    points = np.array([[60.0, 50.0], [120.0, 90.0]])
    predicted = match_points(a, b, points, run=run)
    assert predicted.shape == (2, 2)
    # matching an image with itself lands in the point's own cell: within half a cell diagonal
    from PIL import Image

    half_cell = 7 * max(Image.open(a).size) / 168          # 7 px in the 168-px frame, in image pixels
    assert np.linalg.norm(predicted - points, axis=1).max() <= half_cell * np.sqrt(2)
    assert run.sd_features.forward_passes == 1 and run.dino_features.forward_passes == 1
