"""The reference's arithmetic to the last digit: the TSS flow of the released script (true division,
float32), keypoint → cell mapping in float32, and PF-Pascal's listed (−1, −1) entries (AMBIG-11, AMBIG-23)."""
import numpy as np
import pytest
import torch
from PIL import Image

from sdfuse.data.datasets import Pair
from sdfuse.data.datasets.flo import write_flo
from sdfuse.data.datasets.pfpascal import load_pfpascal
from sdfuse.data.datasets.synthetic_formats import make_pfpascal_like
from sdfuse.data.datasets.tss import TSSSample, read_sample
from sdfuse.errors import ConfigError
from sdfuse.evaluation.tss import FORMS, TSSForm, evaluate_tss
from sdfuse.protocol.flow import dense_flow_to_image, flow_from_nn, tss_pck
from sdfuse.protocol.matching import keypoint_rows
from tests.fixture_scope import per_module

# --- TSS: the released script's flow ------------------------------------------------------------------

NN = np.array([[5, 0, 7],
               [3, 8, 1],
               [4, 4, 2]])
"""A hand-made 3×3 field: target cell (r, c) is matched to source index NN[r, c] = 3·r_s + c_s."""


def test_true_division_flow_by_hand():
    flow = flow_from_nn(NN.ravel(), 3, true_division=True)
    # flow = (c_s − c, index/3 − r): the row is the true quotient, e.g. index 5 at (0, 0) gives 5/3.
    want_x = [[2, -1, -1], [0, 1, -1], [1, 0, 0]]
    want_y = [[5 / 3, 0, 7 / 3], [0, 5 / 3, -2 / 3], [-2 / 3, -2 / 3, -4 / 3]]
    assert flow.dtype == np.float32
    np.testing.assert_array_equal(flow[..., 0], want_x)
    np.testing.assert_allclose(flow[..., 1], want_y, rtol=0, atol=2e-7)
    integer = flow_from_nn(NN.ravel(), 3)                          # the paper form: r_s = index // 3
    np.testing.assert_array_equal(integer[..., 1], [[1, 0, 2], [0, 1, -1], [-1, -1, -2]])
    np.testing.assert_array_equal(integer[..., 0], want_x)


def test_true_division_flow_is_the_released_scripts_float32_to_the_bit():
    # The released nearest_neighbor_flow, re-enacted with torch: torch.div of int64 indices by W (a true
    # division since torch 1.8), fmod for the column, float32 meshgrid subtraction.
    grid = 60
    indices = torch.from_numpy(np.random.default_rng(0).integers(0, grid * grid, size=(grid, grid)))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")
    want_y = torch.div(indices, grid).to(torch.float32) - rows
    want_x = torch.fmod(indices, grid).to(torch.float32) - cols
    flow = flow_from_nn(indices.numpy().ravel(), grid, true_division=True)
    assert np.array_equal(flow[..., 1], want_y.numpy()) and np.array_equal(flow[..., 0], want_x.numpy())


def _write_pair(folder, src_hw, trg_hw):
    folder.mkdir(parents=True)
    for name, (h, w) in (("image1.png", src_hw), ("image2.png", trg_hw)):
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(folder / name)
    for index, (h, w) in ((1, src_hw), (2, trg_hw)):
        write_flo(folder / f"flow{index}.flo", np.zeros((h, w, 2), np.float32))
        Image.fromarray(np.full((h, w), 255, np.uint8)).save(folder / f"mask{index}.png")


def test_reference_flow_on_a_pair_of_different_sizes(tmp_path):
    # Source 40×30 (W×H), target 30×50: both padded right/bottom to 40×50, so L = 50 and the flow keeps
    # columns 5 … 44 of the 50×50 upsampling; the target's valid pixels are its own 30 columns. With the
    # identity match on a 4×4 grid the integer flow is 0; the true-division flow is row + c/4, i.e.
    # v = c/4 cells, upsampled bilinearly: at padded column X, u = (X + 0.5)·4/50 − 0.5 (clamped to
    # [0, 3]) and v = 12.5·u/4 px. L_pck = 40 (the unpadded source), so at α = 0.05 (2 px) a pixel is
    # right iff u ≤ 0.64 iff X ≤ 13: 9 of 30 columns; at α = 0.10 (4 px) iff X ≤ 21: 17 of 30.
    folder = tmp_path / "TSS" / "PASCAL" / "pair01"
    _write_pair(folder, src_hw=(30, 40), trg_hw=(50, 30))
    sample = TSSSample("PASCAL", "pair01", "12", folder / "image1.png", folder / "image2.png", folder / "flow2.flo",
                       folder / "mask2.png")
    data = read_sample(sample)
    assert data.trg.shape[:2] == (50, 40) and data.l_pck == 40.0
    identity = np.arange(16)
    paper = dense_flow_to_image(flow_from_nn(identity, 4), data.trg.shape[:2])
    reference = dense_flow_to_image(flow_from_nn(identity, 4, true_division=True), data.trg.shape[:2])
    assert tss_pck(paper, data.flow, data.mask, data.l_pck, 0.05) == 100.0
    assert tss_pck(reference, data.flow, data.mask, data.l_pck, 0.05) == pytest.approx(100 * 9 / 30)
    assert tss_pck(reference, data.flow, data.mask, data.l_pck, 0.10) == pytest.approx(100 * 17 / 30)


def test_the_forms_say_what_they_compute():
    assert FORMS["reference"] == TSSForm(raw=True, metric="l2", true_division=True)     # the released script
    assert FORMS["paper"] == TSSForm(raw=False, metric="cosine", true_division=False)
    assert FORMS["raw_l2"] == TSSForm(raw=True, metric="l2", true_division=False)
    with pytest.raises(ConfigError, match="unknown TSS form"):
        evaluate_tss([], {}, run=None, forms=("reference_floor",))


# --- keypoint → cell in float32 -----------------------------------------------------------------------

def reference_cells(x, y, width, height, size=840, grid=60):
    """The reference's keypoint → cell arithmetic written out with numpy float32: float32 keypoints,
    times the scale rounded to float32, plus the integer offset, times float32(grid/size), truncated."""
    x, y = np.float32(x), np.float32(y)
    scale = np.float32(size / max(width, height))
    x, y = x * scale, y * scale
    if height < width:
        y = y + np.float32(int((size - int(np.around(size * height / width))) / 2))
    elif width < height:
        x = x + np.float32(int((size - int(np.around(size * width / height))) / 2))
    factor = np.float32(grid / size)
    return int(np.int32(factor * x)), int(np.int32(factor * y))


def reference_cells_torch(x, y, width, height, size=840, grid=60):
    """The same through the reference's own types: a float32 torch row scaled in place by a Python
    float, the offset added in place, then numpy's float32 product with the Python float grid/size."""
    kps = torch.tensor([[x, y, 1.0]], dtype=torch.float)
    kps[:, [0, 1]] *= size / max(width, height)
    if height < width:
        kps[:, 1] += int((size - int(np.around(size * height / width))) / 2)
    elif width < height:
        kps[:, 0] += int((size - int(np.around(size * width / height))) / 2)
    xs, ys = kps[:, 0].numpy(), kps[:, 1].numpy()
    return int((grid / size * xs).astype(np.int32)[0]), int((grid / size * ys).astype(np.int32)[0])


def float64_cells(x, y, width, height, size=840, grid=60):
    """The same steps in float64 (what the project computed before): the cell differs in rare cases."""
    scale = size / max(width, height)
    x, y = x * scale, y * scale
    if height < width:
        y += int((size - int(np.around(size * height / width))) / 2)
    elif width < height:
        x += int((size - int(np.around(size * width / height))) / 2)
    return int(grid / size * x), int(grid / size * y)


def disagreeing_cases(count=400_000, seed=0):
    """Integer and half-integer keypoints on random image sizes where float32 and float64 cells differ,
    found by a vectorised float64 screen around the cell borders and confirmed case by case."""
    rng = np.random.default_rng(seed)
    width, height = rng.integers(64, 1200, size=(2, count))
    x = rng.integers(0, 2 * width) / 2
    y = rng.integers(0, 2 * height) / 2
    long = np.maximum(width, height)
    near = []
    for value, offset in ((x, np.where(width < height, (840 - np.round(840 * width / height)) // 2, 0)),
                          (y, np.where(height < width, (840 - np.round(840 * height / width)) // 2, 0))):
        cell = (value * 840 / long + offset) * 60 / 840
        near.append(np.abs(cell - np.round(cell)) < 1e-4)
    cases = []
    for i in np.flatnonzero(near[0] | near[1]):
        args = (float(x[i]), float(y[i]), int(width[i]), int(height[i]))
        if reference_cells(*args) != float64_cells(*args):
            cases.append(args)
    return cases


def test_keypoint_cells_follow_the_references_float32_arithmetic():
    cases = disagreeing_cases()
    assert len(cases) >= 10                                        # float32 and float64 do disagree
    for x, y, width, height in cases:
        want = reference_cells(x, y, width, height)
        assert want == reference_cells_torch(x, y, width, height)  # two routes to the reference's cell
        pair = Pair("p", "c", None, None, (width, height), (width, height), np.array([[x, y]]), np.array([[x, y]]),
                    np.array([True]), 1.0)
        src, _, _ = pair.in_frame(840)
        assert keypoint_rows(src, 60, 840).tolist() == [60 * want[1] + want[0]], (x, y, width, height)
        assert want != float64_cells(x, y, width, height)


def test_frame_keypoints_are_the_references_float32_values():
    x, y, width, height = 333.5, 101.0, 497, 371                  # landscape: scale 840/497, y offset
    pair = Pair("p", "c", None, None, (width, height), (width, height), np.array([[x, y]]), np.array([[x, y]]),
                np.array([True]), 1.0)
    _, trg, _ = pair.in_frame(840)
    kps = torch.tensor([[x, y]], dtype=torch.float)
    kps *= 840 / 497
    kps[:, 1] += int((840 - int(np.around(840 * 371 / 497))) / 2)
    assert trg.tolist() == kps.double().tolist()


# --- PF-Pascal: listed (−1, −1) entries (AMBIG-23) -------------------------------------------------------

@pytest.fixture(scope=per_module)
def pf_root(tmp_path_factory):
    return make_pfpascal_like(tmp_path_factory.mktemp("pf"))


def test_minus_one_entries_absent_by_default_visible_as_the_reference(pf_root):
    # Row 2 of the fixture lists target keypoint 4 as (−1, −1); its source side is a real point.
    default, reference = load_pfpascal(pf_root)[0], load_pfpascal(pf_root, listed_visible=True)[0]
    assert default.visible.tolist() == [True] * 4 + [False] + [True] * 4
    assert default.trg_kps[4].tolist() == [0.0, 0.0]
    assert reference.visible.all()
    assert reference.trg_kps[4].tolist() == [-1.0, -1.0]
    np.testing.assert_array_equal(reference.src_kps, default.src_kps)
    # Evaluated there at its mapped position: target 168×224, scale 3.75, x offset 105 → (101.25, −3.75),
    # whose cell is (7, 0): the reference's int32 cast truncates −0.27 toward zero.
    _, trg, _ = reference.in_frame(840)
    assert trg[4].tolist() == [101.25, -3.75]
    assert keypoint_rows(trg[4:5], 60, 840).tolist() == [7]
    assert len(default.in_frame(840)[1]) == 8 and len(trg) == 9
