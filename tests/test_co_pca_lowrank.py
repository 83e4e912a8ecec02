"""The reference's randomised co-PCA option (PROTOCOL §3.1, AMBIG-17): torch 1.13.1's pca_lowrank
algorithm, one seed per run, draws in the reference's order (pairs in evaluation order, layers 2, 5, 8)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch._lowrank import get_approximate_basis

from sdfuse.data.datasets.pairs import Pair
from sdfuse.errors import ConfigError
from sdfuse.evaluation.keypoints import evaluate
from sdfuse.evaluation.pair_features import Method
from sdfuse.protocol.fusion import LowrankStream, co_pca, co_pca_lowrank, pca_lowrank_axes
from sdfuse.protocol.metrics import pck_table
from sdfuse.tables.co_pca_randomness import seed_spread, spread_summary


def _decaying(rows, cols, seed):
    """Tokens with a power-law spectrum and an offset, like real features."""
    gen = torch.Generator().manual_seed(seed)
    rank = min(rows, cols)
    u, v = torch.randn(rows, rank, generator=gen), torch.randn(rank, cols, generator=gen) / rank ** 0.5
    return (u * torch.arange(1, rank + 1) ** -0.8) @ v * 100 + torch.randn(cols, generator=gen) * 3


def _centred(src, trg):
    stacked = torch.cat([src, trg])
    return stacked - stacked.mean(dim=0, keepdim=True)


def _reference_projection(centred, q):
    """What the released co_pca computes under torch 1.13 with the global RNG, assembled here from
    torch's own range finder: 1.13's svd_lowrank sketches the transpose when rows < cols or cols > q."""
    a = centred - centred.mean(dim=0, keepdim=True)              # pca_lowrank(center=True) centres again
    assert a.shape[0] < a.shape[1] or a.shape[1] > q              # every SD layer at G = 60
    basis = get_approximate_basis(a.T, q, niter=2)                 # draws randn(rows, q)
    _, _, vh = torch.linalg.svd(a @ basis, full_matrices=False)
    return centred @ (basis @ vh.mH)


def _same_space(p, r, tol=1e-4):
    """Projections equal up to the sign of each axis: compare the token Gram matrices."""
    gp, gr = p.double() @ p.double().T, r.double() @ r.double().T
    return bool((gp - gr).abs().max() <= tol * gr.abs().max())


def test_wide_layer_equals_torch_pca_lowrank_with_the_same_seed():
    x = _decaying(450, 1280, seed=1)                              # layer 2 at G = 60: rows < cols
    src, trg = x[:225], x[225:]
    ours = torch.cat(co_pca_lowrank(src, trg, 256, torch.Generator().manual_seed(7)))
    centred = _centred(src, trg)
    torch.manual_seed(7)
    _, _, v = torch.pca_lowrank(centred, q=256)                   # the reference's call, today's torch
    assert ours.shape == (450, 256) and ours.dtype == torch.float32
    assert _same_space(ours, centred @ v[:, :256])
    other = torch.cat(co_pca_lowrank(src, trg, 256, torch.Generator().manual_seed(8)))
    assert not _same_space(other, ours)                           # the seed matters


def test_tall_layer_follows_torch_1_13_and_its_draw():
    x = _decaying(1800, 640, seed=2)                              # layer 5/8-like: rows ≥ cols > q
    src, trg = x[:900], x[900:]
    ours = torch.cat(co_pca_lowrank(src, trg, 128, torch.Generator().manual_seed(3)))
    torch.manual_seed(3)
    expected = _reference_projection(_centred(src, trg), 128)
    assert _same_space(ours, expected)


def test_stream_draws_layers_2_5_8_pair_after_pair_and_skips_by_drawing():
    gen = torch.Generator().manual_seed(0)
    shapes = {2: (64, 3, 3), 5: (64, 6, 6), 8: (32, 12, 12)}    # tall/wide like the real layers, small
    pairs = [({k: torch.randn(*s, generator=gen) for k, s in shapes.items()},
              {k: torch.randn(*s, generator=gen) for k, s in shapes.items()}) for _ in range(2)]
    full, only_8 = LowrankStream(seed=5), LowrankStream(seed=5)
    torch.manual_seed(5)                                           # the reference: seeded once per run
    for src, trg in pairs:
        out_full = full.pair(src, trg, 16, {2, 5, 8})
        out_8 = only_8.pair(src, trg, 16, {8})
        assert set(out_8) == {8} and torch.equal(out_8[8][0], out_full[8][0])
        for layer in (2, 5, 8):                                    # the reference's order within a pair
            channels = shapes[layer][0]
            s_tok, t_tok = src[layer].reshape(channels, -1).T, trg[layer].reshape(channels, -1).T
            expected = _reference_projection(_centred(s_tok, t_tok), 16)
            got = torch.cat([out_full[layer][0].reshape(16, -1).T, out_full[layer][1].reshape(16, -1).T])
            assert _same_space(got, expected), layer


def test_lowrank_subspace_approaches_the_exact_one_as_niter_grows():
    x = _decaying(900, 640, seed=4)
    centred = _centred(x[:450], x[450:]).double()
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    projector = vh[:64].T @ vh[:64]
    missed, distance = [], []
    for niter in (0, 1, 2, 10):
        v = pca_lowrank_axes(centred, 64, torch.Generator().manual_seed(0), niter=niter)
        missed.append(1 - float((centred @ v).pow(2).sum() / s[:64].pow(2).sum()))   # variance not captured
        distance.append(float(torch.linalg.matrix_norm(v @ v.T - projector)) / 8)     # RMS projector gap
    assert missed[0] > missed[1] > missed[2] > missed[3] >= 0 and distance[0] > distance[1] > distance[2] > distance[3]
    assert 0.01 < missed[0] and missed[2] < 0.005 and missed[3] < 3e-4                # niter = 2 (reference) ≈ 0.998


def test_exact_method_equals_an_svd():
    x = _decaying(600, 200, seed=6).double()
    a, b = co_pca(x[:300], x[300:], 32)
    centred = _centred(x[:300], x[300:])
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    assert _same_space(torch.cat([a, b]), u[:, :32] * s[:32], tol=1e-10)


class _Maps:
    def __init__(self, maps):
        self.maps = maps

    def get(self, path):
        return self.maps[str(path)]


def _pair(name, src, trg, grid, kps):
    frame = 14 * grid
    return Pair(name, "cat", Path(src), Path(trg), (frame, frame), (frame, frame), kps, kps[::-1].copy(),
                np.ones(len(kps), bool), float(frame))


def test_evaluate_runs_one_stream_per_size_and_seed_and_recomputes_repeated_pairs():
    grid, gen = 8, torch.Generator().manual_seed(9)
    shapes = {2: (48, 2, 2), 5: (48, 4, 4), 8: (24, 8, 8)}
    sd = _Maps({n: {k: torch.randn(*s, generator=gen) for k, s in shapes.items()} for n in "abc"})
    dino = _Maps({n: {11: torch.randn(16, grid, grid, generator=gen)} for n in "abc"})
    kps = np.random.default_rng(0).uniform(0, 14 * grid - 1, (12, 2))
    pairs = [_pair("p0", "a", "b", grid, kps), _pair("p1", "b", "c", grid, kps), _pair("p0", "a", "b", grid, kps)]
    methods = {"sd5": Method("SD", sd_layers=(5,), pca_dim=6, co_pca="lowrank"),
               "sd": Method("SD", pca_dim=6, co_pca="lowrank"),
               "sd_seed": Method("SD", pca_dim=6, co_pca="lowrank", co_pca_seed=1),
               "fuse": Method("Fuse", pca_dim=6, co_pca="lowrank"), "exact": Method("SD", pca_dim=6)}
    records = evaluate(pairs, methods, grid, sd, dino, progress=False)
    alone = evaluate(pairs, {"sd5": methods["sd5"]}, grid, sd, dino, progress=False)
    pred = {name: rows.sort_values(["pair", "kp"])["pred_index"].to_numpy() for name, rows in records.groupby("method")}
    # a layer subset draws all three layers like the full method: the same with or without the others
    assert np.array_equal(pred["sd5"], alone.sort_values(["pair", "kp"])["pred_index"].to_numpy())
    # the first pair of a run gets the seed's first draws; the repeated pair (position 2) new ones
    by_pair = records[records["method"] == "sd"].groupby("pair")["pred_index"].apply(list)
    exact = records[records["method"] == "exact"].groupby("pair")["pred_index"].apply(list)
    assert exact[0] == exact[2]
    one = evaluate(pairs[:1], {"sd": methods["sd"]}, grid, sd, dino, progress=False)
    assert one["pred_index"].tolist() == by_pair[0]
    assert not np.array_equal(pred["sd"], pred["sd_seed"])
    with pytest.raises(ConfigError):
        Method("SD", co_pca="svd")


def test_seed_spread_runs_each_seed_as_its_own_run_and_summarises_by_hand():
    grid, gen = 8, torch.Generator().manual_seed(11)
    shapes = {2: (48, 2, 2), 5: (48, 4, 4), 8: (24, 8, 8)}
    names = "abcd"
    sd = _Maps({n: {k: torch.randn(*s, generator=gen) for k, s in shapes.items()} for n in names})
    dino = _Maps({n: {11: torch.randn(16, grid, grid, generator=gen)} for n in names})
    kps = np.random.default_rng(1).uniform(0, 14 * grid - 1, (10, 2))
    pairs = [_pair(f"p{i}", a, b, grid, kps) for i, (a, b) in enumerate(("ab", "cd", "bc"))]
    run = SimpleNamespace(pca_dim=6, grid=grid, sd_features=sd, dino_features=dino, progress=False,
                          sd=SimpleNamespace(device="cpu"))
    table = seed_spread(run, seeds=(42, 3), pairs=pairs)
    alone = evaluate(pairs, {"m": Method("Fuse", pca_dim=6, co_pca="lowrank", co_pca_seed=3)}, grid, sd, dino,
                     progress=False)
    expected = pck_table(alone, by=())
    row = table.query("method == 'Fuse' and co_pca == 'lowrank' and seed == 3")
    merged = row.merge(expected, on=["alpha", "aggregate", "category"], suffixes=("", "_alone"))
    assert len(merged) == len(expected) and np.allclose(merged["value"], merged["value_alone"])
    assert (table.loc[table["co_pca"] == "exact", "identical_nn"] == 1).all()

    by_hand = pd.DataFrame({"method": "SD", "co_pca": ["exact", "lowrank", "lowrank", "lowrank"],
                            "seed": [None, 1, 2, 3], "alpha": 0.1, "aggregate": "category_mean", "category": "all",
                            "value": [50.0, 49.0, 52.0, 50.5], "identical_nn": [1.0, 0.9, 0.8, 0.7]})
    summary = spread_summary(by_hand).iloc[0]
    assert (summary["exact"], summary["lowrank_min"], summary["lowrank_max"], summary["seeds"]) == (50, 49, 52, 3)
    assert summary["spread"] == 3 and summary["exact_within_seeds"] and summary["identical_nn"] == pytest.approx(0.8)


def _reference_draws(generator, src, trg, dim):
    """Advance ``generator`` as the reference's three co-PCAs of a pair do, from the shapes alone: per layer
    in the order 2, 5, 8, q = min(d, N1 + N2, C) and one Gaussian of (N1 + N2) × q if torch 1.13's
    svd_lowrank sketches the transpose (N1 + N2 < C or C > q), else C × q; float64 for float64 maps."""
    for layer in (2, 5, 8):
        if layer in src:
            channels, rows = src[layer].shape[0], src[layer][0].numel() + trg[layer][0].numel()
            q = min(dim, rows, channels)
            dtype = torch.float64 if src[layer].dtype == torch.float64 else torch.float32
            torch.randn(rows if rows < channels or channels > q else channels, q, generator=generator, dtype=dtype,
                        device="cpu")
    return generator


def _maps(shapes, gen, dtype=torch.float32):
    return {k: torch.randn(*s, generator=gen, dtype=dtype) for k, s in shapes.items()}


@pytest.mark.parametrize("shapes, dim, dtype", [
    ({2: (5, 1, 1), 5: (3, 2, 2), 8: (2, 4, 4)}, 4, torch.float32),    # q = rows 2; q = C 3; C 2 ≤ q, rows ≥ C: C × q
    ({2: (1, 2, 2), 5: (6, 3, 3), 8: (40, 3, 3)}, 8, torch.float64),    # one channel; C × q; float64 draws of ≥ 16
    ({5: (4, 2, 2), 8: (40, 3, 3)}, 8, torch.float64),                  # no layer 2: layers 5 and 8 still drawn
])
def test_skipped_layers_consume_the_stream_as_the_reference_draws(shapes, dim, dtype):
    """The stream's state after each pair is the one an explicit generator reaches drawing the
    reference's Gaussians of every layer (PROTOCOL §3.1, AMBIG-17); computed layers as skipped ones."""
    gen = torch.Generator().manual_seed(1)
    pairs = [(_maps(shapes, gen, dtype), _maps(shapes, gen, dtype)) for _ in range(2)]
    computed = max(shapes)
    for layers in (set(), {computed}):
        stream, expected = LowrankStream(seed=3), torch.Generator().manual_seed(3)
        for src, trg in pairs:
            out = stream.pair(src, trg, dim, layers)
            assert set(out) == layers
            assert torch.equal(stream.generator.get_state(), _reference_draws(expected, src, trg, dim).get_state())


def test_skipped_layers_draw_on_the_generators_device_not_torchs_default():
    shapes = {2: (5, 1, 1), 5: (3, 2, 2), 8: (2, 4, 4)}
    gen = torch.Generator().manual_seed(2)
    src, trg = _maps(shapes, gen), _maps(shapes, gen)
    stream = LowrankStream(seed=4)
    with torch.device("meta"):                                     # a default device that is not the stream's
        stream.pair(src, trg, 4, set())
    expected = _reference_draws(torch.Generator().manual_seed(4), src, trg, 4)
    assert torch.equal(stream.generator.get_state(), expected.get_state())


def test_default_stream_is_the_references_seed_42_with_two_power_iterations():
    stream = LowrankStream()
    assert (stream.seed, stream.niter) == (42, 2)
    assert torch.equal(stream.generator.get_state(), torch.Generator().manual_seed(42).get_state())


def test_stream_device_is_the_generators_never_a_silent_cpu_fallback():
    if torch.cuda.is_available():
        assert LowrankStream(device="cuda").generator.device.type == "cuda"
    else:                                                          # no CUDA here: asking for it fails
        with pytest.raises(RuntimeError):
            LowrankStream(device="cuda")


@pytest.mark.parametrize("niter", [0, 1])
def test_stream_passes_its_power_iterations_on(niter):
    shapes = {2: (64, 3, 3), 5: (64, 6, 6), 8: (32, 12, 12)}
    src, trg = _maps(shapes, torch.Generator().manual_seed(6)), _maps(shapes, torch.Generator().manual_seed(7))
    out = LowrankStream(seed=5, niter=niter).pair(src, trg, 16, {2, 5, 8})
    torch.manual_seed(5)
    for layer in (2, 5, 8):
        s_tok, t_tok = src[layer].reshape(shapes[layer][0], -1).T, trg[layer].reshape(shapes[layer][0], -1).T
        centred = _centred(s_tok, t_tok)
        a = centred - centred.mean(dim=0, keepdim=True)
        basis = get_approximate_basis(a.T, 16, niter=niter)       # torch's range finder, this many iterations
        _, _, vh = torch.linalg.svd(a @ basis, full_matrices=False)
        got = torch.cat([out[layer][0].reshape(16, -1).T, out[layer][1].reshape(16, -1).T])
        assert _same_space(got, centred @ (basis @ vh.mH)), layer
    two = LowrankStream(seed=5).pair(src, trg, 16, {8})[8]
    assert not _same_space(torch.cat([t.reshape(16, -1).T for t in two]), got)   # niter tells them apart
