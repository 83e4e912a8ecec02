"""Middlebury .flo files, TSS samples and the feature-free dense evaluation (PROTOCOL §8, §16)."""
import shutil

import numpy as np
import pytest

from sdfuse.data.datasets.flo import read_flo, write_flo
from sdfuse.data.datasets.synthetic_formats import make_tss_like
from sdfuse.data.datasets.tss import load_tss, pad_pair, pair_folder_counts, read_sample
from sdfuse.errors import ConfigError, DatasetError
from sdfuse.protocol.flow import TSS_PAIR_FOLDERS, dense_flow_to_image, flow_from_nn, tss_pck, weighted_average
from tests.fixture_scope import per_module


@pytest.fixture(scope=per_module)
def tss_root(tmp_path_factory):
    return make_tss_like(tmp_path_factory.mktemp("tss"))


# --- .flo -------------------------------------------------------------------------------------

def test_flo_round_trip_and_header(tmp_path):
    flow = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    path = write_flo(tmp_path / "a.flo", flow)
    raw = path.read_bytes()
    assert raw[:4] == b"PIEH"                                     # 202021.25 as little-endian float32
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [5, 3]     # width, then height
    assert len(raw) == 12 + 3 * 5 * 2 * 4
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (3, 5, 2)
    np.testing.assert_array_equal(back, flow)
    assert back[1, 4].tolist() == flow[1, 4].tolist()             # (u, v) interleaved per pixel


def _header(magic, width, height):
    return np.array([magic], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()


@pytest.mark.parametrize("payload, message", [
    (_header(123.0, 2, 2) + bytes(32), "magic"),
    (_header(202021.25, 2, 2) + bytes(28), "truncated"),
    (_header(202021.25, 2, 2) + bytes(36), "over-long"),
    (_header(202021.25, 0, 2), "non-positive"),
    (_header(202021.25, 2, -1), "non-positive"),
    (b"PIEH", "truncated"),
])
def test_bad_flo_files_are_rejected_with_their_path(tmp_path, payload, message):
    path = tmp_path / "bad.flo"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=f"bad.flo.*{message}"):
        read_flo(path)


def test_write_flo_rejects_a_non_flow(tmp_path):
    with pytest.raises(ConfigError):
        write_flo(tmp_path / "x.flo", np.zeros((4, 4, 3)))


# --- samples ----------------------------------------------------------------------------------

def test_both_directions_per_sorted_pair_folder(tss_root):
    samples = load_tss(tss_root)
    assert len(samples) == 8
    assert [(s.subset, s.pair_dir, s.direction) for s in samples[:4]] == [
        ("FG3DCar", "portrait01", "12"), ("FG3DCar", "portrait01", "21"),
        ("FG3DCar", "present02", "12"), ("FG3DCar", "present02", "21")]
    forward, backward = samples[:2]
    folder = tss_root / "FG3DCar" / "portrait01"
    assert (forward.src_image, forward.trg_image, forward.flow, forward.mask) == (
        folder / "image1.png", folder / "image2.png", folder / "flow2.flo", folder / "mask2.png")
    assert (backward.src_image, backward.trg_image, backward.flow, backward.mask) == (
        folder / "image2.png", folder / "image1.png", folder / "flow1.flo", folder / "mask1.png")
    assert pair_folder_counts(samples) == {"FG3DCar": 2, "JODS": 1, "PASCAL": 1}
    assert [s.subset for s in load_tss(tss_root, ("PASCAL", "JODS"))] == ["PASCAL"] * 2 + ["JODS"] * 2


def test_missing_subset_or_file_is_reported(tss_root, tmp_path):
    with pytest.raises(DatasetError, match="TSS subset 'FG3DCar' not found"):
        load_tss(tmp_path)
    root = tmp_path / "TSS_CVPR2016"
    shutil.copytree(tss_root, root)
    (root / "JODS" / "terrain01" / "flow1.flo").unlink()
    with pytest.raises(DatasetError, match="terrain01 lacks flow1.flo"):
        load_tss(root)


def test_read_sample_pads_to_the_common_size(tss_root):
    sample = load_tss(tss_root)[0]                                 # image1 224×168 → image2 168×224
    data = read_sample(sample)
    assert data.l_pck == 224.0                                     # longer side of the unpadded source
    assert data.src.shape == data.trg.shape == (224, 224, 3)
    assert data.flow.shape == (224, 224, 2) and data.mask.shape == (224, 224)
    assert not data.src[168:].any() and not data.trg[:, 168:].any()
    np.testing.assert_array_equal(data.flow[:, 168:], np.repeat(data.flow[:, 167:168], 56, axis=1))
    assert not data.mask[:, 168:].any() and 0.2 < data.mask.mean() < 0.6
    np.testing.assert_array_equal(data.flow[:, :168], read_flo(sample.flow))


def test_gt_flow_maps_target_pixels_into_the_source_picture(tss_root):
    for sample in load_tss(tss_root):
        data = read_sample(sample)
        ys, xs = np.nonzero(data.mask)
        source = np.stack([xs, ys], axis=1) + data.flow[ys, xs]
        h, w = np.asarray(data.src).shape[:2]
        assert (source >= 0).all() and (source[:, 0] < w).all() and (source[:, 1] < h).all()
        here = data.trg[ys, xs].astype(float)
        there = data.src[np.round(source[:, 1]).astype(int), np.round(source[:, 0]).astype(int)].astype(float)
        assert np.abs(here - there).mean() < 25                    # same picture content (resampling noise only)


def test_pad_pair_by_hand():
    src = np.ones((2, 3, 3), np.uint8)
    trg = np.full((4, 2, 3), 7, np.uint8)
    flow = np.arange(16, dtype=np.float32).reshape(4, 2, 2)
    mask = np.ones((4, 2), bool)
    src_p, trg_p, flow_p, mask_p = pad_pair(src, trg, flow, mask)
    assert src_p.shape == trg_p.shape == (4, 3, 3)
    assert src_p[:2].all() and not src_p[2:].any()
    assert (trg_p[:, :2] == 7).all() and not trg_p[:, 2].any()
    np.testing.assert_array_equal(flow_p[:, 2], flow[:, 1])        # replicated last column
    assert mask_p[:, :2].all() and not mask_p[:, 2].any()


# --- dense evaluation -------------------------------------------------------------------------

def test_flow_from_nn_by_hand():
    np.testing.assert_array_equal(flow_from_nn(np.arange(9), 3), np.zeros((3, 3, 2)))
    flow = flow_from_nn(np.full(9, 5), 3)                          # every target cell → source (row 1, col 2)
    assert flow[0, 0].tolist() == [2, 1] and flow[2, 1].tolist() == [1, -1]
    biased = flow_from_nn(np.full(9, 5), 3, true_division=True)    # the reference's row = 5 / 3
    np.testing.assert_allclose(biased[..., 1], flow[..., 1] + 2 / 3, rtol=1e-6)
    np.testing.assert_array_equal(biased[..., 0], flow[..., 0])
    with pytest.raises(ConfigError):
        flow_from_nn(np.array([0, 1, 2, 9]), 2)


def test_dense_flow_to_image_by_hand():
    constant = np.broadcast_to(np.array([1.0, 2.0], np.float32), (4, 4, 2))
    dense = dense_flow_to_image(constant, (30, 20))
    assert dense.shape == (30, 20, 2)
    np.testing.assert_allclose(dense, np.broadcast_to([7.5, 15.0], (30, 20, 2)), rtol=1e-6)  # × L/G = 30/4
    ramp = np.zeros((4, 4, 2), np.float32)
    ramp[..., 0] = np.arange(4)                                    # u = column index
    ramp[..., 1] = np.arange(4)[:, None]                           # v = row index
    tall = dense_flow_to_image(ramp, (30, 20))                     # L = H: columns 5 … 24 of 30
    assert tall[0, 0, 0] == pytest.approx((5.5 * 4 / 30 - 0.5) * 7.5)        # 1.75
    assert tall[0, 19, 0] == pytest.approx((24.5 * 4 / 30 - 0.5) * 7.5)      # 20.75
    assert tall[0, 0, 1] == 0.0 and tall[29, 0, 1] == pytest.approx(3 * 7.5)  # clamped at the borders
    wide = dense_flow_to_image(ramp, (20, 30))                     # L = W: rows 5 … 24 of 30
    assert wide.shape == (20, 30, 2)
    assert wide[0, 0, 1] == pytest.approx(1.75) and wide[19, 0, 1] == pytest.approx(20.75)


def test_tss_pck_uses_less_or_equal():
    gt = np.zeros((10, 10, 2), np.float32)
    est = gt + np.array([3.0, 4.0], np.float32)                    # EPE exactly 5
    mask = np.ones((10, 10), bool)
    assert tss_pck(est, gt, mask, l_pck=100, alpha=0.05) == 100.0  # 5 ≤ 0.05·100
    assert tss_pck(est, gt, mask, l_pck=100, alpha=0.0499) == 0.0
    est[:, :5] = 0                                                 # half the pixels exact
    mask[:2] = False
    assert tss_pck(est, gt, mask, l_pck=100, alpha=0.01) == 50.0
    with pytest.raises(DatasetError, match="no valid pixel"):
        tss_pck(est, gt, np.zeros((10, 10), bool), 100, 0.05)


def perfect_nn(flow: np.ndarray, grid: int) -> np.ndarray:
    """Each target cell's true source cell, from the GT flow sampled at the cell centre."""
    height, width = flow.shape[:2]
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    centres = (np.arange(grid) + 0.5) * side / grid - 0.5
    xs = np.clip(np.round(centres - left).astype(int), 0, width - 1)
    ys = np.clip(np.round(centres - top).astype(int), 0, height - 1)
    source = np.stack(np.meshgrid(xs, ys), axis=-1) + flow[np.ix_(ys, xs)]
    cells = np.clip(np.floor((source + 0.5 + [left, top]) * grid / side).astype(int), 0, grid - 1)
    return (cells[..., 1] * grid + cells[..., 0]).ravel()


def test_perfect_matches_score_100_and_a_known_shift_scores_by_its_epe(tss_root):
    for sample in load_tss(tss_root):
        data = read_sample(sample)
        nn = perfect_nn(data.flow, 60)
        est = dense_flow_to_image(flow_from_nn(nn, 60), data.mask.shape)
        assert tss_pck(est, data.flow, data.mask, data.l_pck, 0.05) == 100.0
        assert tss_pck(est, data.flow, data.mask, data.l_pck, 0.001) < 50.0
        biased = dense_flow_to_image(flow_from_nn(nn, 60, true_division=True), data.mask.shape)
        assert (tss_pck(biased, data.flow, data.mask, data.l_pck, 0.01)
                < tss_pck(est, data.flow, data.mask, data.l_pck, 0.01))     # the reference's row bias costs PCK
        shifted = data.flow + np.array([3.0, 4.0], np.float32)     # EPE 5 everywhere
        assert tss_pck(shifted, data.flow, data.mask, 5.01 / 0.05, 0.05) == 100.0
        assert tss_pck(shifted, data.flow, data.mask, 4.99 / 0.05, 0.05) == 0.0


# --- Table 5's Avg. ---------------------------------------------------------------------------

@pytest.mark.parametrize("row, average", [
    ((82.8, 73.9, 53.9), 72.0),    # DINOv2-ViT-B/14
    ((86.4, 76.0, 60.3), 76.2),    # Filter-ViT-B/14
    ((84.7, 74.2, 59.7), 74.8),    # Ensemble-ViT-B/14
    ((94.3, 73.2, 60.9), 79.7),    # Fuse-ViT-B/14
])
def test_weighted_average_reproduces_table5(row, average):
    per_subset = dict(zip(("FG3DCar", "JODS", "PASCAL"), row))
    assert round(weighted_average(per_subset, TSS_PAIR_FOLDERS), 1) == average
    assert round(weighted_average(per_subset), 1) == average


def test_plain_mean_does_not_reproduce_table5():
    assert sum(TSS_PAIR_FOLDERS.values()) == 400
    assert round(np.mean([82.8, 73.9, 53.9]), 1) == 70.2 != 72.0
    assert weighted_average({"JODS": 70.0, "PASCAL": 80.0}, {"JODS": 1, "PASCAL": 3}) == 77.5
    with pytest.raises(ConfigError, match="Willow"):
        weighted_average({"Willow": 1.0})
