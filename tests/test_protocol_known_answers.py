"""Known answers on hand-made features: Table 3's fusion rows, Table 7's relative distance, TSS's
metric and threshold, PF-Pascal's mutual visibility (PROTOCOL §5.4, §7.2, §8, §10).

The features are built so that the right answer follows from their construction; the real feature
cache, loaders and evaluation run on them (:mod:`tests.feature_stubs`).
"""
from __future__ import annotations

import csv
import io
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sdfuse.data.datasets import Pair
from sdfuse.data.datasets.flo import write_flo
from sdfuse.data.datasets.pfpascal import load_pfpascal
from sdfuse.data.datasets.synthetic_formats import make_pfpascal_like
from sdfuse.data.datasets.tss import load_tss
from sdfuse.evaluation.outcomes import outcome_records
from sdfuse.evaluation.pair_features import Method, PairFeatures
from sdfuse.evaluation.tss import evaluate_tss

from .feature_stubs import ColourKeyedExtractor, Terminal, cached, solid_png, token_map
from .fixture_scope import per_module

# --- Table 3: the four fusion strategies and the reference's sum modes (PROTOCOL §5.4, AMBIG-8) -------

SD_TOKENS = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 1.0], [-2.0, 0.5]])
DINO_TOKENS = np.array([[0.0, 2.0], [6.0, 8.0], [-1.0, 0.0], [0.5, 0.5]])


def _by_hand(strategy: str, sd: np.ndarray, dino: np.ndarray) -> np.ndarray:
    unit_sd = sd / np.linalg.norm(sd, axis=1, keepdims=True)
    unit_dino = dino / np.linalg.norm(dino, axis=1, keepdims=True)
    return {"concat_normalized": np.hstack([0.5 * unit_sd, 0.5 * unit_dino]),
            "concat": np.hstack([sd, dino]), "sum": sd + dino, "sum_normalized": unit_sd + unit_dino}[strategy]


def _pair_features(first_in_category: bool) -> PairFeatures:
    sd_map = token_map(SD_TOKENS, 2)
    dino_map = token_map(DINO_TOKENS, 2)
    return PairFeatures(sd_pca={(8, ("exact", 2)): (sd_map, 2 * sd_map)}, dino={11: (dino_map, -dino_map)}, grid=2,
                        first_in_category=first_in_category)


@pytest.mark.parametrize("strategy", ["concat_normalized", "concat", "sum", "sum_normalized"])
def test_table3_descriptors_by_hand(strategy):
    """First token: SD (3, 4), DINO (0, 2): sum (3, 6), sum of normalised (0.6, 1.8), concat (3, 4, 0, 2)."""
    src, trg = _pair_features(False).descriptors(Method("Fuse", sd_layers=(8,), pca_dim=2, fusion=strategy))
    np.testing.assert_allclose(src.numpy(), _by_hand(strategy, SD_TOKENS, DINO_TOKENS), atol=1e-6)
    np.testing.assert_allclose(trg.numpy(), _by_hand(strategy, 2 * SD_TOKENS, -DINO_TOKENS), atol=1e-6)


@pytest.mark.parametrize("mode, intended", [("sum_reference", "sum"), ("sum_normalized_reference", "sum_normalized")])
def test_reference_sum_modes_are_the_sum_on_a_categorys_first_pair_and_raw_concat_after(mode, intended):
    method = Method("Fuse", sd_layers=(8,), pca_dim=2, fusion=mode)
    first, _ = _pair_features(True).descriptors(method)
    later, _ = _pair_features(False).descriptors(method)
    np.testing.assert_allclose(first.numpy(), _by_hand(intended, SD_TOKENS, DINO_TOKENS), atol=1e-6)
    np.testing.assert_allclose(later.numpy(), _by_hand("concat", SD_TOKENS, DINO_TOKENS), atol=1e-6)


# --- Table 7: relative distance at the ground-truth cell (PROTOCOL §10.4, AMBIG-14) ----------------------

GRID = 4
FRAME = 14 * GRID                      # 56 px: images of that size are not rescaled
SOURCE_COSINES = np.array([0.2, -0.3, 0.1, 0.5, 0.0, 0.95, -0.6, 0.3, 0.4, -0.1, 0.6, 0.25, -0.2, 0.7, 0.05, -0.45])
"""Cosine of each target DINO token to the source keypoint's token: the best is cell 5, the ground truth cell 11."""


def _unit_with_cosine(c: float) -> list[float]:
    return [c, float(np.sqrt(1 - c * c)), 0.0]


def _outcome_inputs(root, src_kps=((3.0, 3.0),), trg_kps=((45.0, 31.0),)):
    """A one-pair case (pairs, methods, grid, sd, dino) for outcome_records; target (45, 31): cell 2·4 + 3 = 11."""
    src = solid_png(root / "src.png", (FRAME, FRAME), (200, 30, 30))
    trg = solid_png(root / "trg.png", (FRAME, FRAME), (30, 200, 30))
    gen = torch.Generator().manual_seed(0)
    dino = {(200, 30, 30): {11: token_map(np.tile([1.0, 0.0, 0.0], (GRID * GRID, 1)), GRID)},
            (30, 200, 30): {11: token_map(np.array([_unit_with_cosine(c) for c in SOURCE_COSINES]), GRID)}}
    sd = {colour: {2: torch.randn(4, 1, 1, generator=gen), 5: torch.randn(4, 2, 2, generator=gen),
                   8: torch.randn(4, GRID, GRID, generator=gen)} for colour in dino}
    pair = Pair("p", "cat", src, trg, (FRAME, FRAME), (FRAME, FRAME), np.array(src_kps), np.array(trg_kps),
                np.ones(len(src_kps), bool), threshold=40.0)
    methods = {"SD": Method("SD", pca_dim=2), "DINO": Method("DINO"), "Fuse": Method("Fuse", pca_dim=2)}
    return ([pair], methods, GRID, cached(ColourKeyedExtractor("sd", sd), root / "cache", "sd"),
            cached(ColourKeyedExtractor("dino", dino), root / "cache", "dino"))


@pytest.fixture(scope=per_module)
def outcome_rows(tmp_path_factory):
    return outcome_records(*_outcome_inputs(tmp_path_factory.mktemp("outcomes")), progress=False).iloc[0]


def test_table7_relative_distance_at_the_ground_truth_cell(outcome_rows):
    """d_j = ‖f̂_src − f̂_j‖ = √(2 − 2 cos_j); r = (d_gt − min d) / (max d − min d) at the GT cell 11."""
    d = np.sqrt(2 - 2 * SOURCE_COSINES)
    assert outcome_rows["gt_index"] == 11 and outcome_rows["pred_DINO"] == 5
    assert outcome_rows["rel_DINO_gt"] == pytest.approx((d[11] - d.min()) / (d.max() - d.min()), abs=1e-6)
    assert outcome_rows["error_DINO"] == pytest.approx(np.hypot(45 - 20.5, 31 - 20.5))
    at_sd = int(outcome_rows["pred_SD"])
    assert outcome_rows["rel_DINO_at_SD"] == pytest.approx((d[at_sd] - d.min()) / (d.max() - d.min()), abs=1e-6)
    one_minus_cos = 1 - SOURCE_COSINES                       # the other distance of AMBIG-14 gives another value
    assert abs((one_minus_cos[11] - one_minus_cos.min()) / np.ptp(one_minus_cos) - outcome_rows["rel_DINO_gt"]) > 0.01


def test_outcome_records_name_pair_and_keypoint_and_take_the_gt_cell_in_the_dino_frame(tmp_path):
    """Two keypoints, the pair listed twice: rows carry pair_id, the keypoint's index and the list
    position. Target (28.5, 42.5) lies in cell (2, 3) of the 56 px frame, 3·4 + 2 = 14 (it would be
    cell (1, 2) = 9 in a 60 px frame)."""
    pairs, *rest = _outcome_inputs(tmp_path, ((3.0, 3.0), (50.0, 10.0)), ((45.0, 31.0), (28.5, 42.5)))
    rows = outcome_records(pairs * 2, *rest, progress=False)
    assert rows["pair_id"].tolist() == ["p"] * 4 and rows["category"].tolist() == ["cat"] * 4
    assert rows["kp"].tolist() == [0, 1, 0, 1] and rows["pair"].tolist() == [0, 0, 1, 1]
    assert rows["gt_index"].tolist() == [11, 14, 11, 14]


@pytest.mark.parametrize("progress", [None, True, False])
def test_outcome_records_draw_a_bar_by_default_and_only_if_asked(tmp_path, progress):
    """tqdm draws on a terminal unless disabled; ``progress=False`` is quiet on a terminal and off it."""
    inputs = _outcome_inputs(tmp_path)
    for stream in (Terminal(), io.StringIO()):
        stderr, sys.stderr = sys.stderr, stream
        try:
            outcome_records(*inputs) if progress is None else outcome_records(*inputs, progress=progress)
        finally:
            sys.stderr = stderr
        drawn = "1/1" in stream.getvalue()
        if isinstance(stream, Terminal):
            assert drawn == (progress is not False)
        elif progress is False:
            assert not drawn


# --- TSS: L2 nearest neighbour in the reference form, threshold from the unpadded source (PROTOCOL §8) ----

TSS_SHIFT = 2.9
"""GT flow (2.9, 0) px everywhere: between 0.05 · 56 (the source's longer side) and 0.05 · 60 (the target's)."""


@pytest.fixture(scope=per_module)
def tss_rows(tmp_path_factory):
    """One pair folder, source 56×42 and target 40×60 (W×H): the pair pads to 56×60.

    Source tokens r_i·u_i and target tokens u_j, with u at 16 distinct angles, r_0 = 1 and r_i = 10
    otherwise: by cosine every target cell matches the source cell at its own position (zero flow);
    by L2 every target cell matches source cell 0.
    """
    root = tmp_path_factory.mktemp("tss")
    folder = root / "TSS_CVPR2016" / "FG3DCar" / "pair01"
    solid_png(folder / "image1.png", (56, 42), (200, 30, 30))
    solid_png(folder / "image2.png", (40, 60), (30, 200, 30))
    write_flo(folder / "flow2.flo", np.tile(np.array([TSS_SHIFT, 0.0], np.float32), (60, 40, 1)))
    write_flo(folder / "flow1.flo", np.zeros((42, 56, 2), np.float32))
    for name, size in (("mask2.png", (40, 60)), ("mask1.png", (56, 42))):
        Image.new("L", size, 255).save(folder / name)
    angles = 0.9 * 2 * np.pi * np.arange(GRID * GRID) / (GRID * GRID)
    units = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    radii = np.where(np.arange(GRID * GRID) == 0, 1.0, 10.0)[:, None]
    dino = {(200, 30, 30): {11: token_map(radii * units, GRID)}, (30, 200, 30): {11: token_map(units, GRID)}}
    run = SimpleNamespace(derived_dir=root / "derived", grid=GRID, sd_features=None, progress=False,
                          dino_features=cached(ColourKeyedExtractor("dino", dino), root / "cache", "dino"))
    samples = [s for s in load_tss(root / "TSS_CVPR2016", subsets=("FG3DCar",)) if s.direction == "12"]
    rows = evaluate_tss(samples, {"DINO": Method("DINO")}, run)
    return rows.set_index(["form", "alpha"])["value"]


def _reference_flow_pck(alpha: float) -> float:
    """Every target cell → source cell 0: the cell flow (−c, −r) is linear, so its bilinear upsampling
    (align_corners=False, 4 → 60, ×15 px per cell) is −15·clamp((p + 0.5)/15 − 0.5, 0, 3) along each
    axis; the target's 40 columns sit at columns 2… of the 60-px square (the 56-px-wide pair, centred)."""
    def upsampled(p):
        return -15 * np.clip((p + 0.5) / 15 - 0.5, 0, 3)

    ys, xs = np.meshgrid(np.arange(60), np.arange(40), indexing="ij")
    epe = np.hypot(upsampled(xs + 2) - TSS_SHIFT, upsampled(ys))
    return 100 * float(np.mean(epe <= alpha * 56))


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.10, 0.15])
def test_tss_paper_form_is_cosine_and_the_threshold_is_the_sources_longer_side(tss_rows, alpha):
    assert tss_rows[("paper", alpha)] == (100.0 if TSS_SHIFT <= alpha * 56 else 0.0)   # 0 at 0.05: 2.8 < 2.9 ≤ 3.0


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.10, 0.15])
def test_tss_reference_form_matches_by_l2(tss_rows, alpha):
    assert tss_rows[("reference", alpha)] == pytest.approx(_reference_flow_pck(alpha), abs=1e-9)
    assert _reference_flow_pck(0.10) < 100                                  # so cosine (100 %) would differ


# --- PF-Pascal: mutual visibility (PROTOCOL §1.2, §7.2) ---------------------------------------------------

def test_pfpascal_keypoint_invisible_in_the_source_is_not_evaluated(tmp_path):
    """The fixture hides keypoint 4 of portrait image 1, a target; swapping the first row's sides hides it
    in the source instead: it is still excluded, and the source row is zeroed, the target row kept."""
    root = make_pfpascal_like(tmp_path)
    with (root / "test_pairs_pf_pascal.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    src_img, trg_img, cls, xa, ya, xb, yb = rows[1]
    rows[1] = [trg_img, src_img, cls, xb, yb, xa, ya]
    with (root / "test_pairs_pf_pascal.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    pair = load_pfpascal(root)[0]
    assert pair.visible.tolist() == [True] * 4 + [False] + [True] * 4
    assert pair.src_kps[4].tolist() == [0.0, 0.0] and pair.trg_kps[4].tolist() != [0.0, 0.0]
    src, trg, _ = pair.in_frame(840)
    assert len(src) == len(trg) == 8
    shutil.rmtree(root)
