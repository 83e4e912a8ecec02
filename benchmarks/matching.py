"""Per-pair matching at G = 60 on the CPU: ours against the reference's per-pair work, both timed
whole, interleaved in one process, with the torch/BLAS threads pinned.

Figures (each timed ``reps`` times, one of each per round, rounds in a row):

- ``ours_fuse``: the library's whole per-pair step for the default Fuse method,
  :func:`sdfuse.evaluation.keypoints._evaluate_pair` on one pair of in-memory random float32 features (SD layers
  2/5/8 at 1280×15×15, 1280×30×30, 640×60×60; DINOv2 768×60×60; K keypoints): exact co-PCA (256 per
  layer), assembly, fusion, NN of the K keypoint rows, keypoint records.
- ``ours_table1``: the same step for supp. Table 1's 14 methods (7 layer subsets × SD, Fuse) at once.
- ``reference_fuse``: what ``pck_spair_pascal.py`` does per pair for one Fuse run (PROTOCOL §3.1, §5.2,
  §6, §14): ``co_pca`` (randomised ``pca_lowrank``, q = 256, niter = 2, torch 1.13's algorithm as
  :func:`sdfuse.protocol.fusion.pca_lowrank_axes`) of layers 2, 5, 8, the [8 | 5 | 2] assembly, L2
  normalisation, concatenation with DINOv2 (1536-d), then ``pairwise_sim``: a Python loop over all
  3600 source tokens, each ``-PairwiseDistance(p=2)`` to all 3600 target tokens, and the NN of the
  keypoint rows. Timed whole: all 3600 rows, nothing extrapolated.
- ``reference_sd``: the same for an SD-only run, whose loop is ``chunk_cosine_sim`` (768-d cosine).
- ``sgemm``: a 2048² float32 matrix product, for the machine's GEMM rate in this very run.

Ratios: ``ours_fuse ÷ reference_fuse`` (one method); ``ours_table1 ÷ (7 reference_fuse + 7
reference_sd)`` (the reference runs each of Table 1's 14 rows as its own script run); each per round
(paired, so slow phases of the machine cancel) and of the medians. The floor is the flop count of the
co-PCA Gram products of the three layers (the smaller Gram of each, counted as a symmetric product:
n(n + 1)/2 entries × 2k flops ≈ n²k) at the measured GEMM rate; ``ours ÷ floor`` says how far the
whole step is from doing nothing but those products.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdfuse.data.datasets.pairs import Pair
from sdfuse.evaluation.keypoints import _evaluate_pair
from sdfuse.evaluation.pair_features import Method, pair_features
from sdfuse.protocol.fusion import pca_lowrank_axes
from sdfuse.tables.paper import TABLE1_SUBSETS, subset_label

from .common import CpuTally, thread_settings

GRID = 60
FRAME = 14 * GRID
PCA = 256
SHAPES = {2: (1280, 15, 15), 5: (1280, 30, 30), 8: (640, 60, 60)}
DINO_SHAPE = (768, 60, 60)
NOISY = 0.20
"""A figure whose (max − min) ÷ median over its repetitions exceeds this is marked noisy."""
FUSE = {"Fuse 2+5+8": Method("Fuse", pca_dim=PCA)}
TABLE1 = {f"{kind} {subset_label(s)}": Method(kind, sd_layers=s, pca_dim=PCA) for s in TABLE1_SUBSETS
          for kind in ("SD", "Fuse")}


class _InMemory:
    """Stands in for a feature cache: ``get`` returns the image's feature maps."""

    def __init__(self, maps: dict):
        self.maps = maps

    def get(self, path):
        return self.maps[str(path)]


def make_inputs(seed: int = 0, keypoints: int = 10) -> dict:
    """One pair of random G = 60 features and K keypoints (square 840-px images: the frame itself)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sd = _InMemory({name: {k: torch.randn(*s, generator=gen) for k, s in SHAPES.items()} for name in ("src", "trg")})
    dino = _InMemory({name: {11: torch.randn(*DINO_SHAPE, generator=gen)} for name in ("src", "trg")})
    kps = rng.uniform(0, FRAME - 1, (keypoints, 2))
    pair = Pair("bench", "bench", Path("src"), Path("trg"), (FRAME, FRAME), (FRAME, FRAME), kps,
                rng.uniform(0, FRAME - 1, (keypoints, 2)), np.ones(keypoints, bool), 300.0)
    return {"pair": pair, "sd": sd, "dino": dino}


def ours(x: dict, methods: dict[str, Method]) -> list[dict]:
    """The library's per-pair step for ``methods``: keypoint records of one pair."""
    return _evaluate_pair(x["pair"], methods, GRID, x["sd"], x["dino"], False, None)


def _row_loop(row, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference's similarity loop: ``row(token, y)`` for every source token, all of them.

    The reference appends the rows to a list and stacks it; here each row goes straight into a
    preallocated (N, N) buffer, the same arithmetic. On the CPU the list form makes glibc's malloc keep
    every row's (N, D) temporary (22 MB at N = 3600, D = 1536) and exhausts the machine's memory.
    """
    out = torch.empty(x.shape[0], x.shape[1], x.shape[2], y.shape[2], dtype=x.dtype)
    for index in range(x.shape[2]):
        out[:, :, index] = row(x[:, :, index, :].unsqueeze(dim=2), y)
    return out


def _pairwise_sim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference's ``pairwise_sim(p=2)``: one −L2 row per source token."""
    return _row_loop(lambda token, y: torch.nn.PairwiseDistance(p=2)(token, y) * (-1), x, y)


def _chunk_cosine_sim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference's ``chunk_cosine_sim``: one cosine row per source token."""
    return _row_loop(torch.nn.CosineSimilarity(dim=3), x, y)


def reference_pair(x: dict, fuse: bool, generator: torch.Generator) -> np.ndarray:
    """The reference's whole per-pair work for one Fuse (or SD-only) run; returns the matched cells."""
    src, trg = x["sd"].get("src"), x["sd"].get("trg")
    reduced = {}
    for layer in (2, 5, 8):                                     # co_pca: s5, s4, s3
        channels, h, w = SHAPES[layer]
        features = torch.cat([src[layer].reshape(channels, -1), trg[layer].reshape(channels, -1)], dim=-1).T
        centred = features - features.mean(dim=0, keepdim=True)
        out = (centred @ pca_lowrank_axes(centred, PCA, generator)).T
        reduced[layer] = (out[:, : h * w].reshape(1, PCA, h, w), out[:, h * w:].reshape(1, PCA, h, w))
    descs = []
    for side in (0, 1):
        s5 = F.interpolate(reduced[2][side], size=(30, 30), mode="bilinear", align_corners=False)
        s5 = torch.cat([reduced[5][side], s5], dim=1)
        desc = torch.cat([reduced[8][side], F.interpolate(s5, size=(GRID, GRID), mode="bilinear")], dim=1)
        desc = desc.reshape(1, 1, desc.shape[1], -1).permute(0, 1, 3, 2)
        if fuse:
            dino = x["dino"].get("src" if side == 0 else "trg")[11].reshape(1, 1, DINO_SHAPE[0], -1).permute(0, 1, 3, 2)
            desc = torch.cat([desc / desc.norm(dim=-1, keepdim=True), dino / dino.norm(dim=-1, keepdim=True)], dim=-1)
        descs.append(desc)
    similarity = (_pairwise_sim if fuse else _chunk_cosine_sim)(descs[0], descs[1]).squeeze()
    kps = x["pair"].src_kps
    cells = (GRID / FRAME * kps).astype(np.int32)
    return torch.argmax(similarity[GRID * cells[:, 1] + cells[:, 0]], dim=1).numpy()


def gram_flops() -> dict:
    """Flops of the three layers' co-PCA Gram products (the smaller Gram of each stacked pair)."""
    flops = {}
    for layer, (channels, h, w) in SHAPES.items():
        rows = 2 * h * w
        n, k = min(rows, channels), max(rows, channels)
        flops[layer] = {"gram_side": n, "inner": k, "symmetric_flops": n * (n + 1) * k, "gemm_flops": 2 * n * n * k}
    return {"per_layer": flops, "symmetric_flops": sum(f["symmetric_flops"] for f in flops.values()),
            "gemm_flops": sum(f["gemm_flops"] for f in flops.values())}


def stats(runs: list[float]) -> dict:
    """Median, min, max and spread = (max − min) ÷ median of repeated timings (or ratios)."""
    median = statistics.median(runs)
    spread = (max(runs) - min(runs)) / median if median else 0.0
    return {"median": round(median, 5), "min": round(min(runs), 5), "max": round(max(runs), 5),
            "spread": round(spread, 3), "noisy": spread > NOISY, "runs": [round(r, 5) for r in runs]}


def _stage_profile(x: dict) -> dict:
    """Where one Table 1 pair's time goes: feature loading + co-PCA vs similarities + records."""
    start = time.perf_counter()
    features = pair_features(x["pair"], TABLE1, GRID, x["sd"], x["dino"])
    middle = time.perf_counter()
    from sdfuse.evaluation.pair_features import pair_keypoints

    _, rows, _, _ = pair_keypoints(x["pair"], GRID)
    for method in TABLE1.values():
        features.similarity(method, rows).argmax(dim=1)
    end = time.perf_counter()
    return {"co_pca_s": round(middle - start, 4), "similarities_of_14_methods_s": round(end - middle, 4)}


def run(reps: int = 5, keypoints: int = 10) -> dict:
    """Every figure ``reps`` times, interleaved, with the threads the caller pinned (:func:`~.common.pin_threads`)."""
    threads = torch.get_num_threads()
    x = make_inputs(keypoints=keypoints)
    generator = torch.Generator().manual_seed(42)           # the reference: seeded once per run
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    figures = {"ours_fuse": lambda: ours(x, FUSE), "reference_fuse": lambda: reference_pair(x, True, generator),
               "ours_table1": lambda: ours(x, TABLE1), "reference_sd": lambda: reference_pair(x, False, generator),
               "sgemm": lambda: a @ b}
    for name in ("ours_fuse", "ours_table1", "sgemm"):     # one-off LAPACK/MKL initialisation
        figures[name]()
    runs = {name: [] for name in figures}
    tallies = {name: CpuTally() for name in figures}
    for round_ in range(reps):
        for name, fn in figures.items():
            with tallies[name]:
                start = time.perf_counter()
                fn()
                runs[name].append(time.perf_counter() - start)
        print(f"[benchmark] matching_cost round {round_ + 1}/{reps}: "
              + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in runs.items()), flush=True)
    profile = _stage_profile(x)
    timings = {name: {**stats(values), "cpu": tallies[name].as_dict()} for name, values in runs.items()}
    gemm_rate = 2 * 2048 ** 3 / timings["sgemm"]["min"]
    flops = gram_flops()
    floor = flops["symmetric_flops"] / gemm_rate
    fuse_ratio = stats([o / r for o, r in zip(runs["ours_fuse"], runs["reference_fuse"])])
    table1_ratio = stats([o / (7 * f + 7 * s) for o, f, s in zip(runs["ours_table1"], runs["reference_fuse"],
                                                                  runs["reference_sd"])])
    med = {name: t["median"] for name, t in timings.items()}
    noisy = sorted(name for name, t in timings.items() if t["noisy"])
    return {
        "method": (f"random float32 features of one pair at G = {GRID}, {keypoints} keypoints, co-PCA {PCA} per layer; "
                   f"{reps} rounds, each timing ours (Fuse; Table 1's 14 methods), the reference's whole per-pair "
                   f"work (Fuse, SD) and a 2048² sgemm once, in one process; {threads} torch threads"),
        "reps": reps, "keypoints": keypoints, "threads": thread_settings(), "timings_s": timings,
        "per_pair_s": med["ours_fuse"], "table1_per_pair_s": med["ours_table1"],
        "reference_per_pair_s": med["reference_fuse"], "reference_sd_per_pair_s": med["reference_sd"],
        "reference_table1_per_pair_s": round(7 * med["reference_fuse"] + 7 * med["reference_sd"], 3),
        "ratio_ours_to_reference": round(med["ours_fuse"] / med["reference_fuse"], 5),
        "ratio_ours_to_reference_per_round": fuse_ratio,
        "table1_ratio_ours_to_reference": round(med["ours_table1"] / (7 * med["reference_fuse"] + 7 * med["reference_sd"]), 5),
        "table1_ratio_ours_to_reference_per_round": table1_ratio,
        "gram": {**flops, "gemm_gflops_per_s": round(gemm_rate / 1e9, 1), "floor_s": round(floor, 4)},
        "ratio_ours_to_floor": round(med["ours_fuse"] / floor, 2),
        "table1_ratio_ours_to_floor": round(med["ours_table1"] / floor, 2),
        "stage_profile_table1": profile,
        "noisy": bool(noisy or fuse_ratio["noisy"] or table1_ratio["noisy"]), "noisy_figures": noisy,
        "target_ratio": 0.03, "target_met": bool(table1_ratio["median"] <= 0.03),
    }
