"""End-to-end oracle: every keypoint table on features that are known functions of true position.

The oracle backbone (:mod:`tests.oracle`) goes behind the real feature cache; the real loaders read the
synthetic SPair-71k, PF-Pascal and CUB fixtures and the real tables run. The expected PCK of every row
is computed here from the annotation files and the recorded warps alone: keypoints mapped to the
frame by the protocol's formula, the source cell, the target cell whose oracle token is most similar
(the PCK that cell quantisation allows with these features), the cell centre 14·p + 6.5, the
threshold, and the four aggregates (PROTOCOL §1.2, §6, §7, §9, §10). A swapped axis, a wrong frame,
threshold or aggregate anywhere in the chain changes some row.
"""
from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdfuse import tables
from sdfuse.data.datasets.cub import asic_square_box, load_cub
from sdfuse.data.datasets.pfpascal import PF_PASCAL_CLASSES, load_pfpascal
from sdfuse.data.datasets.synthetic import make_spair_like
from sdfuse.data.datasets.synthetic_formats import CUB_TRAIN_IMAGE, make_cub_like, make_pfpascal_like
from sdfuse.evaluation.pair_features import Method
from sdfuse.features.cache import CachedExtractor
from sdfuse.profiles.runs import resolve
from sdfuse.protocol import outcomes
from sdfuse.tables.common import keypoint_pck, prefill_features

from .feature_stubs import pixel_digest
from .fixture_scope import per_module
from .oracle import OracleExtractor, View, dino_tokens, read_warps, views_of, warp_view

GRID = 12
FRAME = 14 * GRID
PAIRS_PER_CATEGORY = 10


@pytest.fixture(scope=per_module)
def oracle_run(smoke_root, tmp_path_factory):
    """A smoke run on fresh fixtures whose SD and DINO extractors are the oracle, behind the real cache."""
    root = tmp_path_factory.mktemp("oracle")
    spair = make_spair_like(root / "SPair-71k")
    pascal = make_pfpascal_like(root)
    cub = make_cub_like(root)
    run = resolve("smoke", grid=GRID, data_root=spair, pfpascal_root=pascal, cub_root=cub, cache_dir=root / "cache",
                  pairs_per_category=PAIRS_PER_CATEGORY, progress=False)
    views = {**views_of(spair), **views_of(pascal), **views_of(cub)}
    views |= _cub_crop_views(run, cub)
    run.__dict__["sd_features"] = CachedExtractor(OracleExtractor("sd", views, GRID), run.cache_dir, "sd")
    run.__dict__["dino_features"] = CachedExtractor(OracleExtractor("dino", views, GRID), run.cache_dir, "dino")
    return run


def _cub_crop_views(run, cub) -> dict[str, View]:
    """The oracle's views of the 256-px CUB crops: each crop's box in its source image (PROTOCOL §9)."""
    load_cub(cub, cache_dir=run.derived_dir)                       # writes the crops the tables will read
    stems = {line.split()[1].rsplit("/", 1)[1].removesuffix(".jpg"): line.split()[1]
             for line in (cub / "images.txt").read_text().splitlines()}
    warps = read_warps(cub)
    views = {}
    for crop in (run.derived_dir / "cub_asic256").rglob("*.png"):
        relative = stems[crop.stem.rsplit("-", 1)[0]]
        warp = warps[f"images/{relative}"]
        x0, y0, side = asic_square_box(_cub_boxes(cub)[relative])
        views[pixel_digest(Image.open(crop))] = warp_view((256, 256), np.array(warp["affine"]),
                                                          tuple(warp["picture_size"]), crop=(x0, y0, side))
    return views


# --- the expectation, from the files and the geometry -------------------------------------------------

def to_frame(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Original pixels → the 14·G frame: × T/max(W, H), plus int((T − round(T·short/long))/2) on the short axis."""
    width, height = size
    out = np.asarray(points, dtype=float) * FRAME / max(width, height)
    if height < width:
        out[:, 1] += int((FRAME - np.round(FRAME * height / width)) / 2)
    elif width < height:
        out[:, 0] += int((FRAME - np.round(FRAME * width / height)) / 2)
    return out


def best_cells(src_view: View, trg_view: View, src_frame: np.ndarray) -> np.ndarray:
    """For source keypoints in the frame: the target cell whose oracle token is most similar (first on ties)."""
    cells = np.floor(src_frame * GRID / FRAME).astype(int)
    rows = cells[:, 1] * GRID + cells[:, 0]
    src, trg = (dino_tokens(view, GRID).astype(np.float64) for view in (src_view, trg_view))
    src = src / np.maximum(np.linalg.norm(src, axis=1, keepdims=True), 1e-12)
    trg = trg / np.maximum(np.linalg.norm(trg, axis=1, keepdims=True), 1e-12)
    return (src[rows] @ trg.T).argmax(axis=1)


def centre(cells: np.ndarray) -> np.ndarray:
    return np.stack([14 * (cells % GRID) + 6.5, 14 * (cells // GRID) + 6.5], axis=1)


def expected_keypoints(pairs: list[dict], views: dict) -> pd.DataFrame:
    """One row per evaluated keypoint: category, pair position, threshold, and the error of each matcher.

    ``pairs``: dicts of category, src/trg image files, sizes, (K, 2) keypoints (visible ones only) and
    the threshold length in original target pixels. SD's zero features leave every similarity 0: its
    match is cell 0; DINO's and every fusion's is :func:`best_cells`.
    """
    rows = []
    for position, pair in enumerate(pairs):
        src_view, trg_view = (views[pixel_digest(Image.open(pair[side]))] for side in ("src", "trg"))
        src = to_frame(pair["src_kps"], pair["src_size"])
        gt = to_frame(pair["trg_kps"], pair["trg_size"])
        dino = centre(best_cells(src_view, trg_view, src))
        threshold = pair["threshold"] * FRAME / max(pair["trg_size"])
        for k in range(len(gt)):
            rows.append({"category": pair["category"], "pair": position, "threshold": threshold,
                         "SD": float(np.hypot(*(centre(np.array([0]))[0] - gt[k]))),
                         "DINO": float(np.hypot(*(dino[k] - gt[k])))})
    return pd.DataFrame(rows)


def expected_pck(keypoints: pd.DataFrame, matcher: str, alpha: float) -> dict[str, float]:
    """The four aggregates and the per-category PCK in %, by hand (PROTOCOL §7.1, AMBIG-9)."""
    hit = (keypoints[matcher] < alpha * keypoints["threshold"]).astype(float)
    categories = sorted(keypoints["category"].unique())
    per_category = {c: 100 * hit[keypoints["category"] == c].mean() for c in categories}
    pairs = {c: keypoints.loc[keypoints["category"] == c, "pair"].nunique() for c in categories}
    per_pair = [100 * hit[keypoints["pair"] == p].mean() for p in sorted(keypoints["pair"].unique())]
    return {"category_mean": float(np.mean(list(per_category.values()))),
            "pair_weighted": sum(per_category[c] * pairs[c] for c in categories) / sum(pairs.values()),
            "keypoint_pooled": 100 * float(hit.mean()), "per_image": float(np.mean(per_pair)),
            **{f"category {c}": v for c, v in per_category.items()}}


def table_values(table: pd.DataFrame, setting: str, alpha: float) -> dict[str, float]:
    rows = table[(table["setting"] == setting) & np.isclose(table["alpha"], alpha)]
    return {(a if a != "per_category" else f"category {c}"): v
            for a, c, v in zip(rows["aggregate"], rows["category"], rows["value"])}


def assert_rows(table, settings_matchers: dict[str, str], keypoints, alphas):
    for setting, matcher in settings_matchers.items():
        for alpha in alphas:
            got, want = table_values(table, setting, alpha), expected_pck(keypoints, matcher, alpha)
            assert got.keys() == want.keys(), setting
            for key in want:
                assert got[key] == pytest.approx(want[key], abs=1e-9), (setting, alpha, key)


# --- SPair-71k: Tables 1, 2, 3, 6 -----------------------------------------------------------------------

def spair_pairs(folder) -> list[dict]:
    """The reference's draw, by hand: sorted pair files per sorted category, RandomState(42).choice(n, k)."""
    pairs = []
    for category in sorted(p.name for p in (folder / "ImageAnnotation").iterdir()):
        files = sorted((folder / "PairAnnotation" / "test").glob(f"*:{category}.json"))
        for i in np.random.RandomState(42).choice(len(files), PAIRS_PER_CATEGORY):
            data = json.loads(files[i].read_text())
            x1, y1, x2, y2 = data["trg_bndbox"]
            pairs.append({"category": category, "src": folder / "JPEGImages" / category / data["src_imname"],
                          "trg": folder / "JPEGImages" / category / data["trg_imname"],
                          "src_size": tuple(data["src_imsize"][:2]), "trg_size": tuple(data["trg_imsize"][:2]),
                          "src_kps": np.array(data["src_kps"], float), "trg_kps": np.array(data["trg_kps"], float),
                          "threshold": max(x2 - x1, y2 - y1)})
    return pairs


@pytest.fixture(scope=per_module)
def spair_expected(oracle_run):
    views = oracle_run.dino_features.extractor.views
    return expected_keypoints(spair_pairs(oracle_run.data_root), views)


def test_the_oracle_is_discriminating(spair_expected):
    """Every oracle match lands in a cell next to the truth (14-px cells: errors below 20 px), so PCK@0.10
    is what quantisation allows; SD's cell-0 matches are far off."""
    assert spair_expected["DINO"].max() < 20
    assert expected_pck(spair_expected, "DINO", 0.10)["keypoint_pooled"] > 60
    assert expected_pck(spair_expected, "SD", 0.10)["keypoint_pooled"] < 10


def test_table1_reaches_the_oracles_pck(oracle_run, spair_expected):
    table = tables.table1(oracle_run)
    rows = {f"{kind} {setting}": kind for setting in ("2", "5", "8", "2+5", "2+8", "5+8", "2+5+8")
            for kind in ("SD", "Fuse")}
    table = table.assign(setting=table["method"] + " " + table["setting"])
    assert_rows(table, {setting: "SD" if kind == "SD" else "DINO" for setting, kind in rows.items()},
                spair_expected, (0.01, 0.05, 0.10))


def test_table2_and_table3_reach_the_oracles_pck(oracle_run, spair_expected):
    table2 = tables.table2(oracle_run)
    table2 = table2.assign(setting=table2["method"] + " " + table2["setting"])
    assert_rows(table2, {f"{kind} PCA {d}": "SD" if kind == "SD" else "DINO" for kind in ("SD", "Fuse")
                         for d in (384, 256, 128)}, spair_expected, (0.01, 0.05, 0.10))
    table3 = tables.table3(oracle_run)
    assert_rows(table3, {s: "DINO" for s in ("concat_normalized", "concat", "sum", "sum_normalized", "sum_reference",
                                             "sum_normalized_reference")}, spair_expected, (0.01, 0.05, 0.10))


def test_table6_outcome_shares_by_hand(oracle_run, spair_expected):
    ratios = outcomes.outcome_ratios(tables.outcomes(oracle_run))["all"]
    bits = [(spair_expected[m] < 0.10 * spair_expected["threshold"]).astype(int) for m in ("SD", "DINO", "DINO")]
    classes = pd.Series([f"{a}{b}{c}" for a, b, c in zip(*bits)])
    want = 100 * classes.value_counts(normalize=True).reindex(outcomes.OUTCOME_CLASSES, fill_value=0.0)
    np.testing.assert_allclose(ratios.to_numpy(), want.to_numpy(), atol=1e-9)


# --- PF-Pascal (image-size threshold) and CUB-200 (ASIC crops) ----------------------------------------

def pfpascal_pairs(folder) -> list[dict]:
    """The CSV rows by hand: (−1, −1) entries are invisible; keypoints kept where both sides are visible."""
    pairs = []
    with (folder / "test_pairs_pf_pascal.csv").open(newline="") as handle:
        for row in list(csv.reader(handle))[1:]:
            xa, ya, xb, yb = (np.array([float(v) for v in column.split(";")]) for column in row[3:7])
            visible = ~((xa == -1) & (ya == -1)) & ~((xb == -1) & (yb == -1))
            src, trg = folder.parent / row[0], folder.parent / row[1]
            trg_size = Image.open(trg).size
            pairs.append({"category": PF_PASCAL_CLASSES[int(row[2]) - 1], "src": src, "trg": trg,
                          "src_size": Image.open(src).size, "trg_size": trg_size,
                          "src_kps": np.stack([xa, ya], 1)[visible], "trg_kps": np.stack([xb, yb], 1)[visible],
                          "threshold": max(trg_size)})
    return pairs


def test_pfpascal_keypoint_rows_reach_the_oracles_pck(oracle_run):
    methods = {"DINOv2": Method("DINO"), "Ensemble": Method("DINO", dino_blocks=(9, 11)),
               "Fuse": Method("Fuse", pca_dim=oracle_run.pca_dim)}
    pairs = load_pfpascal(oracle_run.pfpascal_root)
    prefill_features(oracle_run, pairs)
    table = keypoint_pck(oracle_run, pairs, {name: (name, m) for name, m in methods.items()},
                                (0.05, 0.10, 0.15), "PF-Pascal")
    expected = expected_keypoints(pfpascal_pairs(oracle_run.pfpascal_root), oracle_run.dino_features.extractor.views)
    assert len(expected) == 6 * 9 + 3 * 6 - 2                      # two pairs lose the hidden keypoint
    assert_rows(table, dict.fromkeys(methods, "DINO"), expected, (0.05, 0.10, 0.15))


def _cub_boxes(cub) -> dict[str, tuple[float, ...]]:
    """{rel_path: 1-based (x1, y1, x2, y2)} from CUB's 0-based ``x y w h`` bounding_boxes.txt."""
    paths = dict(line.split() for line in (cub / "images.txt").read_text().splitlines())
    boxes = {}
    for line in (cub / "bounding_boxes.txt").read_text().splitlines():
        image_id, x, y, w, h = line.split()
        x, y, w, h = map(float, (x, y, w, h))
        boxes[paths[image_id]] = (x + 1, y + 1, x + w, y + h)
    return boxes


def cub_pairs(cub) -> list[dict]:
    """All ordered pairs within classes 1–3 of the test images, keypoints in crop pixels (PROTOCOL §9)."""
    paths = dict(line.split() for line in (cub / "images.txt").read_text().splitlines())
    parts: dict[str, list] = {}
    for line in (cub / "parts" / "part_locs.txt").read_text().splitlines():
        image_id, _, x, y, v = line.split()
        parts.setdefault(image_id, []).append((float(x), float(y), int(v)))
    boxes, crops = _cub_boxes(cub), {}
    for image_id, relative in paths.items():
        if (int(image_id) - 1) % 4 == CUB_TRAIN_IMAGE:
            continue                                              # each class's training image
        x0, y0, side = asic_square_box(boxes[relative])
        points = np.array(parts[image_id])
        crops.setdefault(relative.split("/")[0], []).append(
            (relative, (points[:, :2] - [x0 + 1, y0 + 1]) * 256 / side, points[:, 2] > 0))
    pairs = []
    for folder, images in sorted(crops.items()):
        for (src, src_kps, src_vis), (trg, trg_kps, trg_vis) in itertools.permutations(images, 2):
            both = src_vis & trg_vis
            pairs.append({"category": folder, "src": src, "trg": trg, "src_size": (256, 256), "trg_size": (256, 256),
                          "src_kps": src_kps[both], "trg_kps": trg_kps[both], "threshold": 256})
    return pairs


def test_table8_cub_reaches_the_oracles_pck(oracle_run):
    table = tables.table8(oracle_run)
    views = oracle_run.dino_features.extractor.views
    by_path = {}
    for crop in (oracle_run.derived_dir / "cub_asic256").rglob("*.png"):
        by_path[crop.stem.rsplit("-", 1)[0]] = crop
    pairs = cub_pairs(oracle_run.cub_root)
    for pair in pairs:
        pair["src"], pair["trg"] = (by_path[pair[side].rsplit("/", 1)[1].removesuffix(".jpg")] for side in ("src", "trg"))
    expected = expected_keypoints(pairs, views)
    assert_rows(table, {"DINOv2": "DINO", "SD": "SD", "Fuse α=0.5": "DINO", "Fuse α=0.8": "DINO"}, expected,
                (0.10, 0.05, 0.01))
