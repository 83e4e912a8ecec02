"""Known answers for the evaluation pipeline (sdfuse.evaluation: pair_features, keypoints): the keypoint
records' fields, the reference's sum modes on each category's first pair, the "lowrank" streams carried
from pair to pair, the projection and Filter-ViT branches, Ensemble-ViT, the two-step upsampling of
layer 2 and the norm floor of the combined similarity (PROTOCOL §3.1, §3.3, §4, §5.2, §5.4, §6, §7.1).

The features are tiny hand-made maps whose right answers follow from their construction (or from a
naive re-implementation written here); the evaluation code runs on them unchanged.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sdfuse.data.datasets.pairs import Pair
from sdfuse.errors import ConfigError
from sdfuse.evaluation.keypoints import evaluate
from sdfuse.evaluation.pair_features import Method, PairFeatures, lowrank_streams, pair_features
from sdfuse.protocol.dino_variants import BilateralFilter
from sdfuse.protocol.fusion import LowrankStream

from .feature_stubs import Terminal, solid_png, token_map

EPS = 1e-12


class _Maps:
    """An extractor stand-in: ``get(path)`` returns the hand-made maps of that image."""

    def __init__(self, maps):
        self.maps = maps

    def get(self, path):
        return {key: value.clone() for key, value in self.maps[str(path)].items()}


def _pair(pair_id, category, grid, src_kps, trg_kps, visible=None, kp_ids=(), src="src", trg="trg"):
    frame = 14 * grid                      # images of the DINO frame's size: keypoints are not rescaled
    src_kps, trg_kps = np.asarray(src_kps, float), np.asarray(trg_kps, float)
    visible = np.ones(len(src_kps), bool) if visible is None else np.asarray(visible)
    return Pair(pair_id, category, Path(src), Path(trg), (frame, frame), (frame, frame), src_kps, trg_kps,
                visible, 20.0, tuple(kp_ids))


# --- a 2×2 grid (28 px frame) whose nearest neighbours are known -------------------------------------------
# cell centres 14·p + 6.5: index 0 (6.5, 6.5), 1 (20.5, 6.5), 2 (6.5, 20.5), 3 (20.5, 20.5)

B = (0.9, float(np.sqrt(1 - 0.81)))                  # a unit vector at cosine 0.9 to (1, 0)
DINO_SRC = np.array([[1.0, 0.0], B, [0.0, 1.0], [0.0, 1.0]])
DINO_TRG = np.array([[0.0, 1.0], [1.0, 0.0], B, [0.0, -1.0]])
"""Source token 0 is (1, 0): its nearest target is token 1 (cos 1), then token 2 (0.9); source token 1
is B: nearest target token 2 (cos 1)."""
SD_SRC = np.array([[0.0, 0.0], [0.0, 0.3], [0.0, -0.3], [0.0, 0.0]])
SD_TRG = np.array([[-0.8, 0.0], [0.8, 0.0], [0.0, 0.0], [0.0, 0.0]])
"""Layer-8 SD tokens of zero joint mean and diagonal covariance (x: 1.28/8, y: 0.18/8): the exact co-PCA to
d = 2 returns them unchanged up to the sign ε of each axis."""


def _two_by_two():
    sd = {"src": {8: token_map(SD_SRC, 2)}, "trg": {8: token_map(SD_TRG, 2)}}
    dino = {"src": {11: token_map(DINO_SRC, 2)}, "trg": {11: token_map(DINO_TRG, 2)}}
    return _Maps(sd), _Maps(dino)


def test_keypoint_records_carry_ids_predictions_and_ground_truth_by_hand():
    """§6, §7.1: one row per visible keypoint with its pair_id, category, kp position, SPair kp id, the matched
    cell and its centre (x, y), the target keypoint (x, y), the error and the threshold."""
    sd, dino = _two_by_two()
    # keypoint 1 is not visible; 0 and 2 sit in source cells 0 and 1
    pair = _pair("p7", "cat", 2, [[3, 5], [25, 25], [17, 4]], [[10, 25], [1, 1], [22, 3]],
                 visible=[True, False, True], kp_ids=(4, 9, 7))
    records = evaluate([pair], {"dino": Method("DINO")}, 2, sd, dino, progress=False)
    assert records["method"].tolist() == ["dino", "dino"]
    assert records["pair_id"].tolist() == ["p7", "p7"] and records["category"].tolist() == ["cat", "cat"]
    assert records["pair"].tolist() == [0, 0] and records["kp"].tolist() == [0, 1]
    assert records["kp_id"].tolist() == [4, 7]                        # the ids of the visible keypoints
    assert records["pred_index"].tolist() == [1, 2]
    assert records["pred_x"].tolist() == [20.5, 6.5] and records["pred_y"].tolist() == [6.5, 20.5]
    assert records["gt_x"].tolist() == [10.0, 22.0] and records["gt_y"].tolist() == [25.0, 3.0]
    np.testing.assert_allclose(records["error"], [np.hypot(10.5, 18.5), np.hypot(15.5, 17.5)], rtol=1e-12)
    assert records["threshold"].tolist() == [20.0, 20.0]


def test_keypoint_records_without_kp_ids_take_the_index_among_all_keypoints():
    """Without SPair ids a keypoint's id is its index among all the pair's keypoints (visible or not)."""
    sd, dino = _two_by_two()
    pair = _pair("q", "dog", 2, [[3, 5], [25, 25], [17, 4]], [[10, 25], [1, 1], [22, 3]],
                 visible=[True, False, True])
    records = evaluate([pair], {"dino": Method("DINO")}, 2, sd, dino, progress=False)
    assert records["kp_id"].tolist() == [0, 2] and records["kp"].tolist() == [0, 1]


SUM_MODE = Method("Fuse", sd_layers=(8,), pca_dim=2, fusion="sum_reference")
"""At source token 0 (SD 0, DINO (1, 0)), for either sign ε of the co-PCA axes: the sum descriptor of target
token 1 is (1 + 0.8ε, 0), cosine 1, and of token 2 B (0.9): the sum matches token 1. Raw concat gives token 1
1/√1.64 ≈ 0.78 and token 2 0.9: concat matches token 2; token 0 scores ≤ 0.63 and token 3 0 in both."""


def test_sum_reference_is_the_sum_on_each_categorys_first_pair_and_concat_after():
    """§5.4, AMBIG-8: the first pair of each category (in list order; a repeated pair is first only at its
    first position) is matched by the sum, every later one by raw concatenation."""
    sd, dino = _two_by_two()
    kp = [[3, 5]]
    a, b, a2 = (_pair("pa", "a", 2, kp, kp), _pair("pb", "b", 2, kp, kp), _pair("pa2", "a", 2, kp, kp))
    records = evaluate([a, a, b, a2, b], {"sum": SUM_MODE}, 2, sd, dino, progress=False)
    assert records["pair"].tolist() == [0, 1, 2, 3, 4]
    assert records["pred_index"].tolist() == [1, 2, 1, 2, 2]


def test_pair_features_are_not_a_categorys_first_pair_unless_told():
    """§5.4: pair_features defaults to a later pair (raw concat); first_in_category=True gives the sum."""
    sd, dino = _two_by_two()
    pair = _pair("p", "a", 2, [[3, 5]], [[3, 5]])
    rows = np.array([0])
    later = pair_features(pair, {"sum": SUM_MODE}, 2, sd, dino)
    first = pair_features(pair, {"sum": SUM_MODE}, 2, sd, dino, first_in_category=True)
    assert later.similarity(SUM_MODE, rows).argmax(dim=1).tolist() == [2]
    assert first.similarity(SUM_MODE, rows).argmax(dim=1).tolist() == [1]


def test_features_without_filter_or_projection_carry_neither():
    """No method filters DINO or uses the projection heads: the pair's guides and projections are None; no
    method uses DINO: its DINO maps are an empty dict."""
    sd, dino = _two_by_two()
    fuse = {"fuse": Method("Fuse", sd_layers=(8,), pca_dim=2)}
    features = pair_features(_pair("p", "a", 2, [[3, 5]], [[3, 5]]), fuse, 2, sd, dino)
    assert features.guides is None and features.projected is None
    sd_only = pair_features(_pair("p", "a", 2, [[3, 5]], [[3, 5]]), {"sd": Method("SD", sd_layers=(8,), pca_dim=2)},
                            2, sd, None)                  # no DINO extractor needed, no DINO maps carried
    assert sd_only.dino == {} and sd_only.guides is None and sd_only.projected is None


# --- "lowrank" co-PCA: one stream per run, carried from pair to pair (PROTOCOL §3.1 step 3, AMBIG-17) -----

LOWRANK = Method("SD", sd_layers=(8,), pca_dim=2, co_pca="lowrank", co_pca_seed=5)
LOWRANK_GRID = 4


def _lowrank_maps():
    gen = torch.Generator().manual_seed(2)
    return {name: {8: torch.randn(24, LOWRANK_GRID, LOWRANK_GRID, generator=gen)} for name in "abc"}


def _nearest(src_map, trg_map, rows):
    """Cosine nearest target token of the source tokens ``rows``, in numpy float64."""
    s = src_map.reshape(src_map.shape[0], -1).T.double().numpy()[rows]
    t = trg_map.reshape(trg_map.shape[0], -1).T.double().numpy()
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    return (s @ t.T).argmax(axis=1)


def test_lowrank_streams_are_seeded_once_per_run_and_carried_across_pairs():
    """AMBIG-17: pair 2 of a run gets the draws after pair 1's, not a fresh seed's first draws. The expected
    draws come from a LowrankStream stepped by hand (its values are pinned independently in
    test_co_pca_lowrank.py and test_fusion_known_answers.py): this pins which stream evaluate uses, when."""
    maps = _lowrank_maps()
    cells = np.arange(LOWRANK_GRID ** 2)
    kps = np.stack([14 * (cells % LOWRANK_GRID) + 3, 14 * (cells // LOWRANK_GRID) + 3], axis=1)
    pairs = [_pair("p0", "cat", LOWRANK_GRID, kps, kps, src="a", trg="b"),
             _pair("p1", "cat", LOWRANK_GRID, kps, kps, src="b", trg="c")]
    records = evaluate(pairs, {"lr": LOWRANK}, LOWRANK_GRID, _Maps(maps), None, progress=False)
    got = [records.loc[records["pair"] == p].sort_values("kp")["pred_index"].tolist() for p in (0, 1)]

    stream = LowrankStream(seed=5)                       # one run: pair 0's draws, then pair 1's
    expected = [_nearest(*stream.pair(maps[s], maps[t], 2, {8})[8], cells).tolist() for s, t in ("ab", "bc")]
    fresh = _nearest(*LowrankStream(seed=5).pair(maps["b"], maps["c"], 2, {8})[8], cells).tolist()
    assert fresh != expected[1]                          # the case tells a carried stream from a fresh one
    assert got == expected


def test_lowrank_pair_listed_twice_draws_anew_each_time():
    """AMBIG-17: the reference draws new numbers for every pair it evaluates, so a pair sampled twice (not the
    category's first either time) is computed twice, with the stream's next draws, not recorded twice."""
    maps = _lowrank_maps()
    cells = np.arange(LOWRANK_GRID ** 2)
    kps = np.stack([14 * (cells % LOWRANK_GRID) + 3, 14 * (cells // LOWRANK_GRID) + 3], axis=1)
    again = _pair("p1", "cat", LOWRANK_GRID, kps, kps, src="b", trg="c")
    pairs = [_pair("p0", "cat", LOWRANK_GRID, kps, kps, src="a", trg="b"), again, again]
    records = evaluate(pairs, {"lr": LOWRANK}, LOWRANK_GRID, _Maps(maps), None, progress=False)
    got = [records.loc[records["pair"] == p].sort_values("kp")["pred_index"].tolist() for p in (0, 1, 2)]

    stream = LowrankStream(seed=5)                       # one run, stepped by hand: a–b, b–c, b–c
    expected = [_nearest(*stream.pair(maps[s], maps[t], 2, {8})[8], cells).tolist() for s, t in ("ab", "bc", "bc")]
    assert expected[2] != expected[1]                    # the case tells a redrawn pair from a recorded one
    assert got == expected


def test_evaluate_draws_the_lowrank_streams_on_the_device_asked_for():
    """co_pca_device reaches the streams: "cuda" draws on CUDA where there is one, and fails where there is none
    rather than silently drawing other numbers on the CPU."""
    maps = _lowrank_maps()
    pair = _pair("p0", "cat", LOWRANK_GRID, [[3, 3]], [[3, 3]], src="a", trg="b")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            evaluate([pair], {"lr": LOWRANK}, LOWRANK_GRID, _Maps(maps), None, progress=False, co_pca_device="cuda")
        return
    records = evaluate([pair], {"lr": LOWRANK}, LOWRANK_GRID, _Maps(maps), None, progress=False,
                       co_pca_device="cuda")
    a, b = LowrankStream(seed=5, device="cuda").pair(maps["a"], maps["b"], 2, {8})[8]
    assert records["pred_index"].tolist() == _nearest(a, b, [0]).tolist()


def test_pair_features_without_streams_draw_a_fresh_run_of_the_methods_size_and_seed():
    """Called alone, pair_features is the first pair of a run: the seed's first draws, to d = pca_dim (the
    stream's own values are pinned independently in test_co_pca_lowrank.py and test_fusion_known_answers.py)."""
    maps = _lowrank_maps()
    pair = _pair("p0", "cat", LOWRANK_GRID, [[3, 3]], [[3, 3]], src="a", trg="b")
    src, trg = pair_features(pair, {"lr": LOWRANK}, LOWRANK_GRID, _Maps(maps), None).descriptors(LOWRANK)
    a, b = LowrankStream(seed=5).pair(maps["a"], maps["b"], 2, {8})[8]
    assert src.shape == (LOWRANK_GRID ** 2, 2) and trg.shape == (LOWRANK_GRID ** 2, 2)
    assert torch.equal(src, a.reshape(2, -1).T) and torch.equal(trg, b.reshape(2, -1).T)


def test_lowrank_streams_draw_on_the_cpu_by_default_and_on_the_device_asked_for():
    """One stream per (size, seed) on the CPU by default; asking for CUDA draws on CUDA (and fails without
    it rather than silently drawing other numbers on the CPU)."""
    streams = lowrank_streams([LOWRANK, Method("SD", pca_dim=2), Method("Fuse", pca_dim=2, co_pca="lowrank")])
    assert set(streams) == {("lowrank", 2, 5), ("lowrank", 2, 42)}
    assert all(s.generator.device.type == "cpu" for s in streams.values())
    if torch.cuda.is_available():
        assert lowrank_streams([LOWRANK], "cuda")[("lowrank", 2, 5)].generator.device.type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            lowrank_streams([LOWRANK], "cuda")


# --- ODISE projection heads (PROTOCOL §3.3) -----------------------------------------------------------

PROJECTION = Method("SD", reduction="projection")


def _projection_maps():
    """Stride-16 maps of the 2×2 grid (the DINO tokens above) and a constant 1×1 stride-32 map (value 0.5)."""
    return _Maps({"src": {16: token_map(DINO_SRC, 2), 32: torch.full((1, 1, 1), 0.5)},
                  "trg": {16: token_map(DINO_TRG, 2), 32: torch.full((1, 1, 1), 0.5)}})


def test_projection_method_matches_on_the_projected_heads():
    """§3.3: descriptor [stride-16 | stride-32 upsampled]; a constant coarse map adds 0.5 to every token, so
    source token 0 (1, 0, .5) still matches target token 1 (cos 1) and B matches token 2."""
    pair = _pair("p", "cat", 2, [[3, 5], [17, 4]], [[3, 5], [17, 4]])
    features = pair_features(pair, {"proj": PROJECTION}, 2, None, None, projection=_projection_maps())
    src, trg = features.descriptors(PROJECTION)
    np.testing.assert_allclose(src.numpy(), np.hstack([DINO_SRC, np.full((4, 1), 0.5)]), atol=1e-6)
    np.testing.assert_allclose(trg.numpy(), np.hstack([DINO_TRG, np.full((4, 1), 0.5)]), atol=1e-6)
    records = evaluate([pair], {"proj": PROJECTION}, 2, None, None, progress=False, projection=_projection_maps())
    assert records["pred_index"].tolist() == [1, 2]


def test_projection_method_without_the_heads_is_a_config_error():
    """A projection method with no projection extractor is refused, naming the projection."""
    pair = _pair("p", "cat", 2, [[3, 5]], [[3, 5]])
    with pytest.raises(ConfigError, match="projection"):
        pair_features(pair, {"proj": PROJECTION}, 2, None, None)


# --- Filter-ViT: the joint bilateral filter guided by each image (PROTOCOL §4) -----------------------------

FILTER_GRID = 4


def _blur_by_hand(tokens: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Normalised Gaussian blur of a (C, G, G) map with reflected borders, by loops."""
    c, g, _ = tokens.shape
    half = kernel // 2

    def reflect(i):
        return -i if i < 0 else (2 * (g - 1) - i if i >= g else i)

    out = np.zeros_like(tokens)
    for y in range(g):
        for x in range(g):
            total, weight = np.zeros(c), 0.0
            for dy in range(-half, half + 1):
                for dx in range(-half, half + 1):
                    w = np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
                    total += w * tokens[:, reflect(y + dy), reflect(x + dx)]
                    weight += w
            out[:, y, x] = total / weight
    return out


def test_filter_vit_blurs_under_a_uniform_guide_and_keeps_tokens_under_distinct_cell_colours(tmp_path):
    """§4: the filter of each side is guided by its own image: the one-colour source image makes it a plain
    Gaussian blur; the target image, one distinct colour per 14-px cell (≥ 0.5 apart), keeps every token."""
    frame = 14 * FILTER_GRID
    src_image = solid_png(tmp_path / "src.png", (frame, frame), (90, 140, 200))
    levels = [0, 128, 255]
    colours = [(levels[i % 3], levels[(i // 3) % 3], levels[i // 9]) for i in range(FILTER_GRID ** 2)]
    picture = np.zeros((frame, frame, 3), np.uint8)
    for i, colour in enumerate(colours):
        row, col = divmod(i, FILTER_GRID)
        picture[14 * row: 14 * row + 14, 14 * col: 14 * col + 14] = colour
    trg_image = tmp_path / "trg.png"
    Image.fromarray(picture).save(trg_image)

    gen = torch.Generator().manual_seed(4)
    src_map, trg_map = (torch.randn(3, FILTER_GRID, FILTER_GRID, generator=gen) for _ in range(2))
    dino = _Maps({str(src_image): {11: src_map}, str(trg_image): {11: trg_map}})
    spec = BilateralFilter(kernel=3, sigma_space=1.0, sigma_color=0.05)
    method = Method("DINO", dino_filter=spec)
    pair = Pair("p", "cat", src_image, trg_image, (frame, frame), (frame, frame), np.zeros((1, 2)), np.zeros((1, 2)),
                np.ones(1, bool), 1.0)
    src, trg = pair_features(pair, {"filter": method}, FILTER_GRID, None, dino).descriptors(method)
    blurred = _blur_by_hand(src_map.double().numpy(), 3, 1.0)
    np.testing.assert_allclose(src.numpy(), blurred.reshape(3, -1).T, atol=1e-5)
    np.testing.assert_allclose(trg.numpy(), trg_map.numpy().reshape(3, -1).T, atol=1e-5)


# --- descriptors and similarities on hand-set co-PCA maps (PROTOCOL §3.1, §4, §5.2) -----------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _up(x: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of a (C, h, w) map to side × side, in float64."""
    return F.interpolate(x[None].double(), size=(side, side), mode="bilinear", align_corners=False)[0]


def test_ensemble_vit_concatenates_the_l2_normalised_blocks():
    """§4 Ensemble-ViT: blocks 9 and 11, each token L2-normalised, joined in the order asked for."""
    b9 = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [0.0, -5.0]])
    b11 = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 3.0], [2.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    features = PairFeatures(sd_pca={}, dino={9: (token_map(b9, 2), token_map(2 * b9, 2)),
                                             11: (token_map(b11, 2), token_map(b11, 2))}, grid=2)
    src, trg = features.descriptors(Method("DINO", dino_blocks=(9, 11)))
    np.testing.assert_allclose(src.numpy(), np.hstack([_unit(b9), _unit(b11)]), atol=1e-6)
    np.testing.assert_allclose(trg.numpy(), np.hstack([_unit(b9), _unit(b11)]), atol=1e-6)


def test_layer_2_reaches_the_grid_in_two_bilinear_steps():
    """§3.1: layer 2 (G/4) is resized bilinearly to G/2, then to G (not in one step); layer 5 in one."""
    gen = torch.Generator().manual_seed(1)
    l2, l5 = torch.randn(3, 2, 2, generator=gen), torch.randn(3, 4, 4, generator=gen)
    features = PairFeatures(sd_pca={(2, ("exact", 3)): (l2, -l2), (5, ("exact", 3)): (l5, l5)}, grid=8, dino={})
    src, trg = features.descriptors(Method("SD", sd_layers=(2,), pca_dim=3))
    two_steps = _up(_up(l2, 4), 8).reshape(3, -1).T
    assert not torch.allclose(two_steps, _up(l2, 8).reshape(3, -1).T, atol=1e-3)   # the steps matter here
    torch.testing.assert_close(src.double(), two_steps, atol=1e-6, rtol=0)
    torch.testing.assert_close(trg.double(), -two_steps, atol=1e-6, rtol=0)
    src5, _ = features.descriptors(Method("SD", sd_layers=(5,), pca_dim=3))
    torch.testing.assert_close(src5.double(), _up(l5, 8).reshape(3, -1).T, atol=1e-6, rtol=0)


def _cosine_by_hand(sd_src, sd_trg, dino_src, dino_trg, alpha, rows):
    """Fused cosine (α l2n(SD), (1 − α) l2n(DINO)) with l2n(x) = x / max(‖x‖, 1e-12), in float64 (§5.2)."""
    def l2n(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)

    fs = np.hstack([alpha * l2n(sd_src), (1 - alpha) * l2n(dino_src)])[rows]
    ft = np.hstack([alpha * l2n(sd_trg), (1 - alpha) * l2n(dino_trg)])
    norm_s, norm_t = (np.maximum(np.linalg.norm(f, axis=1), EPS) for f in (fs, ft))
    return (fs @ ft.T) / norm_s[:, None] / norm_t[None, :]


def test_combined_similarity_follows_the_norm_floor_for_tokens_below_it():
    """§5.2: a token of norm below the floor 1e-12 is divided by the floor, not by its norm (it keeps a norm
    below one): the fused cosine of such SD and DINO tokens, by hand."""
    sd_src = np.array([[3e-13, 4e-13], [1.0, 2.0], [0.0, 1.0], [2.0, -1.0]])      # token 0: norm 5e-13
    sd_trg = np.array([[1.0, 0.0], [1e-13, -2e-13], [-1.0, 1.0], [0.5, 0.5]])     # token 1: norm 2.2e-13
    dino_src = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [2e-13, 0.0, 1e-13], [1.0, 0.0, 1.0]])
    dino_trg = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [3e-13, 3e-13, 0.0], [1.0, 2.0, 3.0]])
    features = PairFeatures(sd_pca={(8, ("exact", 2)): (token_map(sd_src, 2), token_map(sd_trg, 2))},
                            dino={11: (token_map(dino_src, 2), token_map(dino_trg, 2))}, grid=2)
    rows = np.array([0, 2, 3, 1])
    for alpha in (0.5, 0.3):
        method = Method("Fuse", sd_layers=(8,), pca_dim=2, alpha=alpha)
        assert method.combines_dot_products
        as_stored = (x.astype(np.float32).astype(np.float64) for x in (sd_src, sd_trg, dino_src, dino_trg))
        expected = _cosine_by_hand(*as_stored, alpha, rows)
        np.testing.assert_allclose(features.similarity(method, rows).numpy(), expected, rtol=0, atol=1e-9)


def test_similarity_rows_of_any_integer_dtype_index_tokens():
    """Source rows index tokens whatever their integer dtype: uint8 rows are indices, not a mask."""
    dino_src = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]])
    dino_trg = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [2.0, 2.0]])
    features = PairFeatures(sd_pca={}, dino={11: (token_map(dino_src, 2), token_map(dino_trg, 2))}, grid=2)
    rows = np.array([3, 0, 2], dtype=np.uint8)
    expected = _unit(dino_src)[[3, 0, 2]] @ _unit(dino_trg).T
    np.testing.assert_allclose(features.similarity(Method("DINO"), rows).numpy(), expected, rtol=0, atol=1e-7)


# --- the progress bar -----------------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [None, False])
def test_evaluate_draws_a_bar_by_default_and_not_when_asked(progress, monkeypatch):
    """tqdm draws on a terminal unless ``progress=False``."""
    sd, dino = _two_by_two()
    args = ([_pair("p", "a", 2, [[3, 5]], [[3, 5]])], {"dino": Method("DINO")}, 2, sd, dino)
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    evaluate(*args) if progress is None else evaluate(*args, progress=progress)
    assert ("1/1" in stream.getvalue()) == (progress is None)
