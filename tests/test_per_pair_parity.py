"""The optimised per-pair path (one Gram and eigensolve per layer for every PCA size, float32 Gram
products, similarities combined from shared per-layer dot products) finds the same nearest neighbours
as a straightforward all-float64 SVD co-PCA written here (PROTOCOL §3.1, §5.2, §6), for Table 1's 14
methods and Table 2's sizes, on one pair with the real channel counts at G = 48."""
import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdfuse.data.datasets.pairs import Pair
from sdfuse.evaluation.keypoints import evaluate
from sdfuse.evaluation.pair_features import Method
from sdfuse.tables.paper import TABLE1_SUBSETS

GRID = 48
CHANNELS = {2: 1280, 5: 1280, 8: 640}                 # SD v1.5 layers 2, 5, 8
SIDES = {2: GRID // 4, 5: GRID // 2, 8: GRID}


def _decaying(rows, cols, gen):
    """Tokens with a power-law spectrum and an offset, like real features (harder than white noise)."""
    rank = min(rows, cols)
    u, v = torch.randn(rows, rank, generator=gen), torch.randn(rank, cols, generator=gen) / rank ** 0.5
    return (u * torch.arange(1, rank + 1) ** -0.8) @ v * 100 + torch.randn(cols, generator=gen) * 3


class _Maps:
    def __init__(self, maps):
        self.maps = maps

    def get(self, path):
        return self.maps[str(path)]


def _features(seed):
    gen = torch.Generator().manual_seed(seed)
    sd = {"src": {}, "trg": {}}
    for layer, channels in CHANNELS.items():
        side = SIDES[layer]
        tokens = _decaying(2 * side * side, channels, gen)
        for name, part in (("src", tokens[: side * side]), ("trg", tokens[side * side:])):
            sd[name][layer] = part.T.reshape(channels, side, side).contiguous()
    dino = {name: {11: torch.randn(768, GRID, GRID, generator=gen)} for name in ("src", "trg")}
    return sd, dino


def _svd_co_pca(sd, layer):
    """Straightforward co-PCA: float64 SVD of the jointly centred stack; per size, the projection on
    the top axes as (source, target) (d, h, w) maps."""
    src, trg = sd["src"][layer], sd["trg"][layer]
    stacked = torch.cat([m.reshape(m.shape[0], -1).T.double() for m in (src, trg)])
    centred = stacked - stacked.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    side = src.shape[-1]

    @functools.cache
    def project(dim):
        projected = centred @ vh[: min(dim, *centred.shape)].T
        return [p.T.reshape(-1, side, side) for p in (projected[: side * side], projected[side * side:])]
    return project


def _up(x, size):
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def _reference_nn(svd, dino, method, rows):
    descriptors = []
    for side in (0, 1):
        maps = {layer: svd[layer](method.pca_dim)[side] for layer in method.sd_layers}
        half = [maps[5]] if 5 in maps else []
        half += [_up(maps[2], GRID // 2)] if 2 in maps else []
        parts = ([maps[8]] if 8 in maps else []) + ([_up(torch.cat(half), GRID)] if half else [])
        desc = torch.cat(parts).reshape(sum(p.shape[0] for p in parts), -1).T
        if method.kind == "Fuse":
            tokens = dino["src" if side == 0 else "trg"][11].reshape(768, -1).T.double()
            desc = torch.cat([method.alpha * desc / desc.norm(dim=1, keepdim=True),
                              (1 - method.alpha) * tokens / tokens.norm(dim=1, keepdim=True)], dim=1)
        descriptors.append(desc / desc.norm(dim=1, keepdim=True))
    return (descriptors[0][torch.as_tensor(rows)] @ descriptors[1].T).argmax(dim=1).numpy()


def _records(methods, sd, dino, kps):
    frame = 14 * GRID
    pair = Pair("p", "cat", Path("src"), Path("trg"), (frame, frame), (frame, frame), kps, kps.copy(),
                np.ones(len(kps), bool), float(frame))
    records = evaluate([pair], methods, GRID, _Maps(sd), _Maps(dino), progress=False)
    return {name: rows.sort_values("kp")["pred_index"].to_numpy() for name, rows in records.groupby("method")}


def test_optimised_per_pair_path_finds_the_float64_svd_nearest_neighbours():
    sd, dino = _features(seed=0)
    rng = np.random.default_rng(0)
    kps = rng.uniform(0, 14 * GRID - 1, (150, 2))
    cells = np.clip((GRID / (14 * GRID) * kps).astype(int), 0, GRID - 1)
    rows = cells[:, 1] * GRID + cells[:, 0]
    table1 = {f"{kind} {'+'.join(map(str, subset))}": Method(kind, sd_layers=subset, pca_dim=256)
              for subset in TABLE1_SUBSETS for kind in ("SD", "Fuse")}
    table1 |= {f"{kind} 128": Method(kind, pca_dim=128) for kind in ("SD", "Fuse")}   # shares the d = 256 solve
    table2 = {f"{kind} {d}": Method(kind, pca_dim=d) for d in (384, 256, 128) for kind in ("SD", "Fuse")}
    table2 |= {"Fuse α=0.8": Method("Fuse", pca_dim=256, alpha=0.8)}
    svd = {layer: _svd_co_pca(sd, layer) for layer in CHANNELS}
    for methods in (table1, table2):          # subset eigensolver (d ≤ n/4) and full eigh (d = 384)
        ours = _records(methods, sd, dino, kps)
        for name, method in methods.items():
            expected = _reference_nn(svd, dino, method, rows)
            assert np.array_equal(ours[name], expected), (name, int((ours[name] != expected).sum()))


def test_combined_similarity_equals_the_cosine_of_the_assembled_descriptors():
    """PairFeatures.similarity (per-layer dot products) against similarity_rows on descriptors()
    (concatenate, normalise, multiply), with zero tokens in both SD and DINO to pin the norm floor."""
    from sdfuse.evaluation.pair_features import pair_features
    from sdfuse.protocol.matching import similarity_rows

    grid, gen = 8, torch.Generator().manual_seed(3)
    shapes = {2: (20, 2, 2), 5: (20, 4, 4), 8: (12, 8, 8)}
    sd = {n: {k: torch.randn(*s, generator=gen) for k, s in shapes.items()} for n in ("src", "trg")}
    dino = {n: {11: torch.randn(10, grid, grid, generator=gen), 9: torch.randn(10, grid, grid, generator=gen)}
            for n in ("src", "trg")}
    dino["trg"][11][:, 0, 1] = 0                               # a zero DINO token in the target
    sd["src"][8][:, 0, 0] = sd["src"][8].mean(dim=(1, 2))     # ≈ the mean: small after centring
    methods = {"sd": Method("SD", pca_dim=6), "sd8": Method("SD", sd_layers=(8,), pca_dim=6),
               "dino": Method("DINO"), "fuse": Method("Fuse", pca_dim=6),
               "fuse.3": Method("Fuse", sd_layers=(2, 5), pca_dim=4, alpha=0.3),
               "fuse1": Method("Fuse", pca_dim=6, alpha=1.0), "ensemble": Method("DINO", dino_blocks=(9, 11))}
    frame = 14 * grid
    pair = Pair("p", "cat", Path("src"), Path("trg"), (frame, frame), (frame, frame), np.zeros((1, 2)),
                np.zeros((1, 2)), np.ones(1, bool), 1.0)
    features = pair_features(pair, methods, grid, _Maps(sd), _Maps(dino))
    rows = np.arange(0, grid * grid, 3)
    for name, method in methods.items():
        combined = features.similarity(method, rows)
        assembled = similarity_rows(*features.descriptors(method), rows)
        assert combined.dtype == torch.float64 and combined.shape == (len(rows), grid * grid)
        assert torch.allclose(combined, assembled, atol=1e-6), name
        assert torch.equal(combined.argmax(dim=1), assembled.argmax(dim=1)), name
    assert torch.equal(features.similarity(methods["fuse1"], rows), features.similarity(methods["sd"], rows))
