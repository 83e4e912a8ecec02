"""What verifying feature-cache entries on read costs in a warm run at G = 60 (sdfuse.features.cache).

Each image has two entries of the paper profile's real sizes, float32: SD layers 2/5/8
(1280×15×15, 1280×30×30, 640×60×60) and DINOv2 blocks 9 and 11 (2 × 768×60×60), ≈ 37 MB in all.
Stub extractors (random tensors of those shapes) fill a cache for two images; then a warm run of
one pair goes through the library's own path, :func:`sdfuse.evaluation.keypoints.evaluate` with the default
Fuse method: fresh :class:`~sdfuse.features.cache.CachedExtractor` objects (empty memory LRU, so
all four entries are read from disk, the worst case), the read, co-PCA, fusion, matching and PCK
records. :meth:`CachedExtractor.verify` is timed inside that run; the overhead is its time over
the rest of the run. Inside the run it also pays the first touch of the freshly mapped tensor
pages, which the co-PCA would otherwise pay, so it is timed a second time on the same, now
resident, tensors: the cost of the checks alone. Real runs read fewer entries per pair (the LRU
keeps an image's features for its other pairs), so both bound the overhead from above.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sdfuse.data.datasets.pairs import Pair
from sdfuse.evaluation.keypoints import evaluate
from sdfuse.evaluation.pair_features import Method
from sdfuse.features.cache import CachedExtractor

from .cache_size import DINO_SHAPES, SD_SHAPES

GRID = 60
TARGET = 0.05


@dataclass(frozen=True)
class _Setting:
    kind: str

    def fingerprint(self) -> dict:
        return {"benchmark": self.kind, "grid": GRID}


class _RandomFeatures:
    """An extractor stand-in: seeded random float32 maps of the real shapes."""

    def __init__(self, kind: str, shapes: dict[int, tuple[int, ...]]):
        self.config, self.shapes = _Setting(kind), shapes

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        gen = torch.Generator().manual_seed(int(np.asarray(image).sum()))
        return {key: torch.randn(*shape, generator=gen) for key, shape in self.shapes.items()}


def _timed_verify(cache: CachedExtractor, calls: list[tuple]) -> CachedExtractor:
    """Record (seconds, arguments) of every ``verify`` call of ``cache``."""
    verify = cache.verify

    def timed(*args):
        start = time.perf_counter()
        try:
            return verify(*args)
        finally:
            calls.append((time.perf_counter() - start, verify, args))

    cache.verify = timed
    return cache


def _resident(calls: list[tuple]) -> float:
    """The same checks again on the same tensors, now in memory."""
    start = time.perf_counter()
    assert all(verify(*args) is None for _, verify, args in calls)
    return time.perf_counter() - start


def run(reps: int = 3, keypoints: int = 10) -> dict:
    extractors = {"sd": _RandomFeatures("sd", SD_SHAPES), "dino": _RandomFeatures("dino", DINO_SHAPES)}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for name, size in (("src.png", (320, 240)), ("trg.png", (240, 320))):
            images.append(Path(tmp) / name)
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(images[-1])
        for kind, extractor in extractors.items():
            CachedExtractor(extractor, Path(tmp) / "cache", kind).prefill(images, progress=False)
        pair = Pair("bench", "bench", images[0], images[1], (320, 240), (240, 320),
                    rng.uniform(0, 239, (keypoints, 2)), rng.uniform(0, 239, (keypoints, 2)),
                    np.ones(keypoints, bool), 100.0)
        entry_bytes = sum(p.stat().st_size for p in (Path(tmp) / "cache").glob("*/??/*.safetensors")) / len(images)
        runs = []
        for _ in range(reps):
            calls: list[tuple] = []
            sd, dino = (_timed_verify(CachedExtractor(extractors[k], Path(tmp) / "cache", k), calls) for k in ("sd", "dino"))
            start = time.perf_counter()
            evaluate([pair], {"Fuse": Method("Fuse")}, GRID, sd, dino, progress=False)
            total = time.perf_counter() - start
            assert sd.forward_passes == dino.forward_passes == 0 and len(calls) == 4
            verify = sum(seconds for seconds, _, _ in calls)
            runs.append({"warm_pair_s": total, "verify_in_run_s": verify, "verify_resident_s": _resident(calls)})
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    rest = median["warm_pair_s"] - median["verify_in_run_s"]
    overhead = median["verify_in_run_s"] / rest
    return {"entry_mb_per_image": round(entry_bytes / 1e6, 1), "entries_read_per_pair": 4,
            **{key: round(value, 4) for key, value in median.items()},
            "verify_resident_gb_per_s": round(2 * entry_bytes / median["verify_resident_s"] / 1e9, 2),
            "overhead_fraction": round(overhead, 4),
            "overhead_fraction_resident": round(median["verify_resident_s"] / rest, 4),
            "target": f"<= {TARGET}", "target_met": overhead <= TARGET,
            "runs": [{k: round(v, 4) for k, v in r.items()} for r in runs],
            "method": "evaluate of one pair, default Fuse method, G = 60, fresh cache objects "
                      "(all 4 entries read from disk); verify timed inside the run and again on resident tensors; "
                      "overhead = verify / (run - verify), medians over reps"}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
