"""Known answers for TSS end to end and for its array steps (PROTOCOL §8, AMBIG-11).

The end-to-end case runs the real loader, padding, feature cache and :func:`evaluate_tss` on hand-made
features (:mod:`tests.feature_stubs`) whose nearest neighbours follow from their construction, for
every form, both directions and a DINO and a fused method. Every expected cell flow is affine in the
target cell's position, so its bilinear upsampling (align_corners=False) is that affine function of
each pixel's cell coordinate, clamped to [0, G − 1]: the expected PCK is computed here from the
geometry, without interpolating anything.
"""
from __future__ import annotations

import struct
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdfuse.data.datasets.flo import read_flo, write_flo
from sdfuse.data.datasets.tss import TSSSample, load_tss
from sdfuse.errors import ConfigError
from sdfuse.evaluation.pair_features import Method
from sdfuse.evaluation.tss import TSS_ALPHAS, _padded_paths, evaluate_tss, reference_form
from sdfuse.protocol.flow import dense_flow_to_image, flow_from_nn, tss_pck

from .feature_stubs import ColourKeyedExtractor, Terminal, cached, solid_png, token_map
from .fixture_scope import per_module

G = 4
RED, GREEN = (200, 30, 30), (30, 200, 30)
SIZE1, SIZE2 = (48, 36), (40, 52)          # image1 and image2, W×H: the pair pads to 48×52, so L = 52
GT2, GT1 = (2.3, 1.1), (-1.0, 2.0)         # constant GT flows on image2 (direction 12) and image1 (21)
ANGLES = np.radians([0, 20, 45, 62, 88, 110, 131, 150, 172, 195, 213, 240, 258, 281, 300, 322])
SHORT = 5
"""image1's one short DINO token: cell (1, 1), so the true division's row 5/4 differs from 5 // 4."""


def _valid(width: int, height: int, direction: str) -> np.ndarray:
    """The target's validity mask: from column 10 on image2 (direction 12), from row 6 on image1 (21)."""
    ys, xs = np.mgrid[0:height, 0:width]
    return xs >= 10 if direction == "12" else ys >= 6


def _run(root, progress=False):
    units = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
    radii = np.where(np.arange(G * G) == SHORT, 1.0, 10.0)[:, None]
    dino = {RED: {11: token_map(radii * units, G)}, GREEN: {11: token_map(units, G)}}
    # SD layer 8 varies along one channel only, +1 on image1 and −1 on image2: its 1-D co-PCA is ±1 on each
    # side, a constant term in every cosine and every L2 distance. Layer 5 is constant: its co-PCA is 0.
    sd = {colour: {8: token_map(np.tile([sign, 0.0], (G * G, 1)), G), 5: token_map(np.tile([0.5, 0.25], (4, 1)), 2)}
          for colour, sign in ((RED, 1.0), (GREEN, -1.0))}
    return SimpleNamespace(derived_dir=root / "derived", grid=G, progress=progress,
                           sd_features=cached(ColourKeyedExtractor("sd", sd), root / "cache", "sd"),
                           dino_features=cached(ColourKeyedExtractor("dino", dino), root / "cache", "dino"))


@pytest.fixture(scope=per_module)
def tss_case(tmp_path_factory):
    """One JODS pair folder. Source tokens of image1 are r_i·u_i (u at 16 distinct angles, r = 10 but
    r_5 = 1), image2's are u_j. By cosine every target cell matches its own position in both directions.
    By L2, image2's cells all match image1's cell 5 (‖u_j − u_5‖² ≤ 4 < 81 ≤ ‖u_j − 10 u_i‖²), and
    image1's cells match their own position in image2. The fused method adds SD terms that are the same
    for every pair of cells, so it matches as DINO does in every form, unless its forms are mixed up."""
    root = tmp_path_factory.mktemp("tss_known")
    folder = root / "TSS_CVPR2016" / "JODS" / "pair01"
    solid_png(folder / "image1.png", SIZE1, RED)
    solid_png(folder / "image2.png", SIZE2, GREEN)
    for index, (width, height), gt, direction in ((2, SIZE2, GT2, "12"), (1, SIZE1, GT1, "21")):
        write_flo(folder / f"flow{index}.flo", np.tile(np.array(gt, np.float32), (height, width, 1)))
        mask = _valid(width, height, direction)
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(folder / f"mask{index}.png")
    samples = load_tss(root / "TSS_CVPR2016", subsets=("JODS",))
    run = _run(root)
    methods = {"DINO": Method("DINO"), "Fuse": Method("Fuse", sd_layers=(5, 8), pca_dim=1)}
    terminal, stderr = Terminal(), sys.stderr
    sys.stderr = terminal
    try:
        rows = evaluate_tss(samples, methods, run)
    finally:
        sys.stderr = stderr
    return SimpleNamespace(rows=rows, run=run, samples=samples, stderr=terminal.getvalue())


def _padded(size, colour):
    """An image of ``size`` (W, H) in ``colour``, zero-padded right/bottom to the pair's 48×52."""
    array = np.zeros((52, 48, 3), np.uint8)
    array[:size[1], :size[0]] = colour
    return array


def _expected_pck(cell_flow, target_size, gt, valid, l_pck, alpha):
    """PCK of the cell flow ``cell_flow(r, c) → (u, v)`` (affine) on the padded target, by hand."""
    height, width, side = 52, 48, 52                       # L = H: the target keeps columns 2 … 49 of the square
    ys, xs = np.mgrid[0:height, 0:width].astype(float)
    cx = np.clip((xs + (side - width) // 2 + 0.5) * G / side - 0.5, 0, G - 1)
    cy = np.clip((ys + 0.5) * G / side - 0.5, 0, G - 1)
    u, v = (np.asarray(part, float) * side / G for part in cell_flow(cy, cx))
    mask = np.zeros((height, width), bool)
    mask[:target_size[1], :target_size[0]] = valid
    epe = np.hypot(u - gt[0], v - gt[1])[mask]
    threshold = alpha * l_pck
    assert np.abs(epe - threshold).min() > 1e-4             # no pixel at the threshold: float32 cannot move one
    return 100 * float(np.mean(epe <= threshold))


CASES = {
    ("12", "paper"): lambda r, c: (0 * c, 0 * r),             # cosine: every cell its own position
    ("12", "raw_l2"): lambda r, c: (1 - c, 1 - r),            # L2: every cell to source (1, 1)
    ("12", "reference"): lambda r, c: (1 - c, 5 / 4 - r),     # ... whose row by true division is 5/4
    ("21", "paper"): lambda r, c: (0 * c, 0 * r),
    ("21", "raw_l2"): lambda r, c: (0 * c, 0 * r),            # L2 in this direction: the own position too
    ("21", "reference"): lambda r, c: (0 * c, c / 4),         # ... whose row by true division is r + c/4
}
"""Each (direction, form)'s cell flow (u, v) at target cell (r, c), the same for DINO and the fusion."""


@pytest.mark.parametrize("direction, form", list(CASES))
def test_every_form_and_direction_scores_its_known_flow(tss_case, direction, form):
    # direction 12: source image1 (L_pck 48), target image2 with GT (2.3, 1.1), valid from column 10;
    # direction 21: source image2 (L_pck 52), target image1 with GT (−1, 2), valid from row 6.
    target, gt, l_pck = (SIZE2, GT2, 48) if direction == "12" else (SIZE1, GT1, 52)
    valid = _valid(*target, direction)
    rows = tss_case.rows.set_index(["direction", "method", "form", "alpha"])["value"]
    for method in ("DINO", "Fuse"):
        got = [rows[(direction, method, form, alpha)] for alpha in TSS_ALPHAS]
        want = [_expected_pck(CASES[direction, form], target, gt, valid, l_pck, alpha) for alpha in TSS_ALPHAS]
        assert got == pytest.approx(want, abs=1e-9), (method, got, want)


def test_the_forms_differ_on_this_case(tss_case):
    """So that a form computed as another would fail the known answers above."""
    rows = tss_case.rows.groupby(["direction", "form"])["value"].apply(tuple)
    assert len({rows[("12", form)] for form in ("paper", "raw_l2", "reference")}) == 3
    assert rows[("21", "reference")] != rows[("21", "raw_l2")]


def test_rows_name_their_sample_method_form_and_alpha(tss_case):
    rows = tss_case.rows
    assert list(rows.columns) == ["subset", "pair_dir", "direction", "method", "form", "alpha", "value"]
    assert len(rows) == 2 * 2 * 3 * len(TSS_ALPHAS)
    assert set(rows["subset"]) == {"JODS"} and set(rows["pair_dir"]) == {"pair01"}
    assert sorted(set(rows["direction"])) == ["12", "21"] and sorted(set(rows["method"])) == ["DINO", "Fuse"]
    assert sorted(set(rows["form"])) == ["paper", "raw_l2", "reference"]
    assert set(rows.groupby(["direction", "method", "form"])["alpha"].apply(tuple)) == {TSS_ALPHAS}


def test_padded_pair_images_are_written_under_the_derived_tss_folder(tss_case):
    folder = tss_case.run.derived_dir / "tss" / "JODS" / "pair01"
    files = sorted(folder.iterdir())
    assert [f.name.split("_padded-")[0] for f in files] == ["image1", "image2"]
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])), _padded(SIZE1, RED))
    np.testing.assert_array_equal(np.asarray(Image.open(files[1])), _padded(SIZE2, GREEN))


def test_no_progress_bar_unless_asked_even_on_a_terminal(tss_case, tmp_path):
    assert tss_case.stderr == ""
    terminal, stderr = Terminal(), sys.stderr
    sys.stderr = terminal
    try:
        evaluate_tss(tss_case.samples, {}, _run(tmp_path, progress=True))
    finally:
        sys.stderr = stderr
    assert "2/2" in terminal.getvalue()                    # both directions of the pair folder


@pytest.mark.parametrize("forms", [("reference_floor",), ()])
def test_unknown_or_no_forms_are_refused(forms):
    with pytest.raises(ConfigError, match="TSS form"):
        evaluate_tss([], {"DINO": Method("DINO")}, run=None, forms=forms)


def test_reference_form_is_the_raw_concatenation_for_the_fusion_only():
    assert reference_form(Method("Fuse", sd_layers=(5, 8), pca_dim=3, alpha=0.3)) == Method(
        "Fuse", sd_layers=(5, 8), pca_dim=3, alpha=0.3, fusion="concat")
    for kind in ("SD", "DINO"):
        assert reference_form(Method(kind, pca_dim=3)) == Method(kind, pca_dim=3)


def test_padded_images_follow_the_sources_bytes_and_the_padded_size(tmp_path):
    folder = tmp_path / "TSS_CVPR2016" / "PASCAL" / "pair01"
    sample = TSSSample("PASCAL", "pair01", "12", folder / "image1.png", folder / "image2.png", folder / "flow2.flo",
                       folder / "mask2.png")
    run = SimpleNamespace(derived_dir=tmp_path / "derived")

    def padded_pair(src_size, src_colour, trg_size):
        solid_png(sample.src_image, src_size, src_colour)
        solid_png(sample.trg_image, trg_size, GREEN)
        height, width = max(src_size[1], trg_size[1]), max(src_size[0], trg_size[0])
        arrays = [np.zeros((height, width, 3), np.uint8) for _ in range(2)]
        arrays[0][:src_size[1], :src_size[0]] = src_colour
        arrays[1][:trg_size[1], :trg_size[0]] = GREEN
        paths = _padded_paths(run, sample, *arrays)
        for path, array in zip(paths, arrays):
            np.testing.assert_array_equal(np.asarray(Image.open(path)), array)
        return paths

    first = padded_pair((20, 10), RED, (10, 10))
    recoloured = padded_pair((20, 10), (10, 20, 250), (10, 10))     # same name and size, other content
    assert recoloured[0] != first[0] and recoloured[1] == first[1]
    padded_pair((20, 10), (10, 20, 250), (30, 30))                    # same source file, larger padded pair


# --- the array steps ------------------------------------------------------------------------------------

def test_write_flo_writes_a_one_pixel_high_flow_and_refuses_an_empty_one(tmp_path):
    flow = np.array([[[1.5, -2.0], [0.25, 3.0], [-0.5, 0.0]]])     # float64, 1×3
    path = write_flo(tmp_path / "row.flo", flow)
    assert path.read_bytes() == b"PIEH" + struct.pack("<2i", 3, 1) + struct.pack("<6f", 1.5, -2.0, 0.25, 3.0, -0.5, 0.0)
    assert read_flo(path).tolist() == flow.tolist()
    with pytest.raises(ConfigError, match="non-empty"):
        write_flo(tmp_path / "empty.flo", np.zeros((0, 3, 2)))
    assert not (tmp_path / "empty.flo").exists()


NN = np.array([[7, 2, 0],
               [4, 4, 8],
               [1, 6, 3]])
"""A 3×3 index field as a dense matcher lays it out: target (r, c) → source index 3·r_s + c_s."""


def test_flow_from_nn_takes_the_field_in_its_grid_shape_and_gives_float32_in_both_forms():
    # source (r_s, c_s) = divmod(NN, 3) = rows [[2,0,0],[1,1,2],[0,2,1]], columns [[1,2,0],[1,1,2],[1,0,0]]
    want_u = [[1, 1, -2], [1, 0, 0], [1, -1, -2]]
    integer = flow_from_nn(NN, 3)
    assert integer.dtype == np.float32 and integer.shape == (3, 3, 2)
    np.testing.assert_array_equal(integer[..., 0], want_u)
    np.testing.assert_array_equal(integer[..., 1], [[2, 0, 0], [0, 0, 1], [-2, 0, -1]])
    true = flow_from_nn(NN, 3, true_division=True)
    rows = np.arange(3, dtype=np.float32)[:, None]
    want_v = NN.astype(np.float32) / np.float32(3) - rows          # float32(index / 3) − float32(r), in float32
    assert true.dtype == np.float32
    np.testing.assert_array_equal(true[..., 0], want_u)
    np.testing.assert_array_equal(true[..., 1], want_v)
    assert not np.array_equal(want_v, NN / 3 - np.arange(3)[:, None])   # float64 would give other values here


@pytest.mark.parametrize("indices", [[0, 1, 2, 4], [-1, 0, 1, 2], [0, 1, 2]])
def test_flow_from_nn_refuses_an_index_off_the_grid_or_a_wrong_count(indices):
    assert flow_from_nn(np.array([3, 0, 1, 2]), 2).shape == (2, 2, 2)   # G² − 1 = 3 is the last cell
    with pytest.raises(ConfigError, match="source indices"):
        flow_from_nn(np.array(indices), 2)


def test_dense_flow_to_image_gives_float32_from_any_numeric_cell_flow():
    want = np.broadcast_to(np.array([1.0, 2.0]) * 30 / 4, (30, 20, 2))       # constant flow × L/G
    for dtype in (np.int64, np.float64, np.float32):
        dense = dense_flow_to_image(np.broadcast_to(np.array([1, 2], dtype), (4, 4, 2)), (30, 20))
        assert dense.dtype == np.float32
        np.testing.assert_allclose(dense, want, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3, 2), (4, 4, 3), (16, 2)])
def test_dense_flow_to_image_refuses_a_cell_flow_that_is_not_g_by_g_by_2(shape):
    with pytest.raises(ConfigError, match=r"\(G, G, 2\)"):
        dense_flow_to_image(np.zeros(shape, np.float32), (30, 20))


def test_tss_pck_computes_the_epe_in_float32():
    # 5 + 1e-9 px is past the threshold 0.05 · 100 = 5 px in float64 but exactly 5 in float32: correct
    mask = np.ones((2, 2), bool)
    near = np.zeros((2, 2, 2))
    near[..., 0] = 5 + 1e-9
    assert tss_pck(near, np.zeros((2, 2, 2), np.float32), mask, 100, 0.05) == 100.0
    behind = np.zeros((2, 2, 2))
    behind[..., 0] = -1e-9
    assert tss_pck(np.full((2, 2, 2), [5.0, 0.0], np.float32), behind, mask, 100, 0.05) == 100.0


def test_tss_pck_reads_a_0_1_mask_as_valid_pixels():
    est = np.zeros((2, 3, 2), np.float32)
    est[..., 0] = [[1, 3, 5], [2, 4, 6]]                           # EPE = u against a zero GT
    mask = np.array([[1, 0, 1], [0, 1, 1]], np.uint8)              # EPEs 1, 5, 4, 6 are evaluated
    assert tss_pck(est, np.zeros_like(est), mask, 100, 0.045) == 50.0
    assert tss_pck(est, np.zeros_like(est), mask.astype(bool), 100, 0.045) == 50.0


def test_tss_pck_refuses_an_estimate_of_another_shape():
    with pytest.raises(ConfigError, match="disagree"):
        tss_pck(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones((2, 4), bool), 100, 0.05)



def _naive_subset_means(folders, resamples, seed):
    """Per-image means per subset on the data and on resamples, drawn as documented (strata sorted; in each,
    its folders in first-appearance order, n draws with replacement from one generator), by plain loops."""
    rng = np.random.default_rng(seed)
    point, replicates = {}, {}
    for subset in sorted({s for s, _ in folders}):
        units = [(len(directions), sum(directions.values())) for (s, _), directions in folders.items() if s == subset]
        point[subset] = sum(v for _, v in units) / sum(n for n, _ in units)
        draws = rng.integers(0, len(units), size=(resamples, len(units)))
        replicates[subset] = np.array([sum(units[i][1] for i in row) / sum(units[i][0] for i in row) for row in draws])
    return point, replicates


def test_tss_summary_by_hand_with_a_naive_bootstrap():
    from sdfuse.evaluation.tss import tss_summary

    # folders listed out of order (b before a; subset T before S): the draws follow first appearance
    values = {("T", "b"): {"12": 10.0, "21": 30.0}, ("T", "a"): {"12": 70.0},
              ("S", "z"): {"12": 0.0, "21": 100.0}, ("S", "y"): {"12": 40.0, "21": 60.0}, ("S", "x"): {"12": 90.0}}
    rows = [{"subset": s, "pair_dir": f, "direction": d, "method": m, "form": form, "alpha": alpha,
             "value": v + offset}
            for (s, f), directions in values.items() for d, v in directions.items()
            for m, form, alpha, offset in (("Fuse", "paper", 0.05, 0.0), ("DINO", "reference", 0.10, 1.0))]
    samples = [TSSSample(s, f, d, *[None] * 4) for (s, f), directions in values.items() for d in directions]
    summary = tss_summary(pd.DataFrame(rows), samples, resamples=7, seed=3)
    assert summary[["method", "form", "alpha"]].drop_duplicates().values.tolist() == [
        ["Fuse", "paper", 0.05], ["DINO", "reference", 0.10]]
    point, replicates = _naive_subset_means(values, resamples=7, seed=3)
    weights = {"S": 3, "T": 2}                                   # pair folders per subset, from the samples
    for method, offset in (("Fuse", 0.0), ("DINO", 1.0)):
        got = summary[summary["method"] == method].set_index("subset")
        assert got.index.tolist() == ["S", "T", "Avg."]
        for subset in ("S", "T"):
            low, high = np.percentile(replicates[subset] + offset, [2.5, 97.5])
            assert got.loc[subset, ["value", "ci_low", "ci_high"]].tolist() == pytest.approx(
                [point[subset] + offset, low, high])
        average = (weights["S"] * replicates["S"] + weights["T"] * replicates["T"]) / 5 + offset
        assert got.loc["Avg.", ["value", "ci_low", "ci_high"]].tolist() == pytest.approx(
            [(weights["S"] * point["S"] + weights["T"] * point["T"]) / 5 + offset, *np.percentile(average, [2.5, 97.5])])
    assert summary.loc[summary["subset"] == "S", "value"].iloc[0] == pytest.approx((0 + 100 + 40 + 60 + 90) / 5)
