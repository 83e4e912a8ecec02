"""Known answers for resize-with-padding, keypoint mapping and patch <-> pixel (PROTOCOL §1, §6)."""
import numpy as np
import pytest
from PIL import Image

from sdfuse.protocol.geometry import (map_keypoints, pad_offsets, patch_index, patch_to_pixel, pixel_to_patch,
                                      resize_pad, resized_content_size)


@pytest.mark.parametrize("size, target, expected", [
    ((500, 375), 840, (840, 630)),   # landscape
    ((375, 500), 840, (630, 840)),   # portrait
    ((333, 500), 840, (559, 840)),   # odd: 559.44 → 559
    ((400, 400), 840, (840, 840)),   # square
    ((4, 1), 10, (10, 2)),           # 2.5 rounds half to even → 2
    ((4, 3), 10, (10, 8)),           # 7.5 rounds half to even → 8
])
def test_resized_content_size(size, target, expected):
    assert resized_content_size(*size, target) == expected


def test_pad_offsets_put_the_larger_half_bottom_right():
    assert pad_offsets(500, 375, 840) == (0, 105)
    assert pad_offsets(333, 500, 840) == (140, 0)      # gap 281: 140 left, 141 right
    assert pad_offsets(4, 3, 10) == (0, 1)              # gap 2: 1 top, 1 bottom


def test_resize_pad_places_content_on_black_canvas():
    canvas = np.asarray(resize_pad(Image.new("RGB", (300, 200), (255, 255, 255)), 60))
    assert canvas.shape == (60, 60, 3)
    assert (canvas[:10] == 0).all() and (canvas[50:] == 0).all()
    assert (canvas[10:50] == 255).all()


def test_resize_pad_edge_replicates_border_rows():
    image = np.zeros((20, 30, 3), np.uint8)
    image[0] = 200      # top row
    image[-1] = 100     # bottom row
    canvas = np.asarray(resize_pad(Image.fromarray(image), 30, edge=True))
    assert (canvas[:5] == canvas[5]).all() and (canvas[25:] == canvas[24]).all()
    assert canvas[0, 0, 0] == 200 and canvas[-1, 0, 0] == 100


def test_map_keypoints_landscape_portrait_square():
    assert np.allclose(map_keypoints([[100, 100]], 500, 375, 840), [[168, 100 * 1.68 + 105]])
    assert np.allclose(map_keypoints([[100, 100]], 375, 500, 840), [[168 + 105, 168]])
    assert np.allclose(map_keypoints([[10, 20]], 400, 400, 840), [[21, 42]])


def test_map_keypoints_keeps_reference_scale_mismatch():
    # content is resized to 10×7 (scale 7/2 vertically) but keypoints use 10/3, offset int(1.5) = 1
    assert np.allclose(map_keypoints([[3, 2]], 3, 2, 10), [[10, 2 * 10 / 3 + 1]])


def test_pixel_patch_round_trip_and_index():
    cells = pixel_to_patch([[13.99, 0.0], [14.0, 839.9], [6.5, 20.0]], 60, 840)
    assert cells.tolist() == [[0, 0], [1, 59], [0, 1]]
    assert patch_to_pixel([0, 59]).tolist() == [6.5, 832.5]
    assert patch_index(np.array([[3, 2], [59, 59]]), 60).tolist() == [123, 3599]


@pytest.mark.parametrize("size", [(57, 40), (40, 57)])
def test_resize_pad_resamples_with_lanczos(size):
    """The content is PIL's LANCZOS resize of the image (PROTOCOL §1.1); on a noise image BICUBIC would differ."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    canvas = np.asarray(resize_pad(image, 84))
    w, h = size
    new = (84, round(84 * h / w)) if h <= w else (round(84 * w / h), 84)       # 84·40/57 = 58.9 → 59
    top, left = (84 - new[1]) // 2, (84 - new[0]) // 2
    content = canvas[top:top + new[1], left:left + new[0]]
    np.testing.assert_array_equal(content, np.asarray(image.resize(new, Image.LANCZOS)))
    assert not np.array_equal(content, np.asarray(image.resize(new, Image.BICUBIC)))


@pytest.mark.parametrize("width, height, target, frame_point, original", [
    (200, 100, 840, (420.0, 420.0), (100.0, 50.0)),      # landscape: scale 4.2, content 420 px high, 210 px above
    (100, 200, 840, (500.0, 420.0), (290 / 4.2, 100.0)),  # portrait: 210 px to the left
    (200, 200, 840, (84.0, 42.0), (20.0, 10.0)),         # square: no padding
    (3, 2, 10, (5.0, 5.0), (1.5, 1.2)),                  # content round(20/3) = 7 px high, int(3/2) = 1 px above
])
def test_unmap_keypoints_undoes_the_frame_by_hand(width, height, target, frame_point, original):
    from sdfuse.protocol.geometry import unmap_keypoints

    assert unmap_keypoints(np.array([frame_point]), width, height, target) == pytest.approx(np.array([original]))


def test_unmap_keypoints_of_several_float32_points_computes_in_float64():
    from sdfuse.protocol.geometry import unmap_keypoints

    frame = np.array([[420.1, 420.0], [210.0, 630.0]], dtype=np.float32)
    got = unmap_keypoints(frame, 200, 100, 840)                  # landscape: 210 px above the content
    assert got.dtype == np.float64
    want = (frame.astype(np.float64) - [0.0, 210.0]) / 4.2
    assert np.array_equal(got, want)
