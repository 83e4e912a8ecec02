"""SPair-71k from its on-disk layout, with the reference's pair sampling (PROTOCOL §7.1, §11)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .pairs import Pair

LAYOUT = ("JPEGImages", "ImageAnnotation", "PairAnnotation")


def spair_categories(root: Path) -> list[str]:
    """Sorted folder names of ``ImageAnnotation/`` (18 in the real dataset)."""
    return sorted(p.name for p in (root / "ImageAnnotation").iterdir() if p.is_dir())


def sample_indices(n: int, pairs_per_category: int, seed: int = 42) -> list[int]:
    """The reference's per-category draw: legacy RandomState(seed).choice(n, k), *with* replacement.

    Re-seeded for every category; k = 0 keeps all n pairs in order (PROTOCOL §7.1).
    """
    if pairs_per_category <= 0:
        return list(range(n))
    return np.random.RandomState(seed).choice(n, pairs_per_category).tolist()


def read_pair(path: Path, root: Path) -> Pair:
    """One ``PairAnnotation`` JSON → :class:`Pair` (threshold: target bbox's longer side, no +1)."""
    try:
        data = json.loads(path.read_text())
        category = data["category"]
        if data.get("mirror", 0) != 0:
            raise DatasetError(f"{path}: mirrored pairs are not part of the protocol (mirror={data['mirror']})")
        x1, y1, x2, y2 = data["trg_bndbox"]
        src_kps = np.asarray(data["src_kps"], dtype=np.float64).reshape(-1, 2)
        trg_kps = np.asarray(data["trg_kps"], dtype=np.float64).reshape(-1, 2)
        kp_ids = tuple(int(k) for k in data["kps_ids"])
        src_size = tuple(int(v) for v in data["src_imsize"][:2])
        trg_size = tuple(int(v) for v in data["trg_imsize"][:2])
        names = data["src_imname"], data["trg_imname"]
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{path}: malformed SPair-71k pair annotation ({error!r})") from error
    if not (len(src_kps) == len(trg_kps) == len(kp_ids)):
        raise DatasetError(f"{path}: {len(src_kps)} source, {len(trg_kps)} target keypoints and {len(kp_ids)} ids")
    return Pair(
        pair_id=path.stem, category=category,
        src_image=root / "JPEGImages" / category / names[0],
        trg_image=root / "JPEGImages" / category / names[1],
        src_size=src_size, trg_size=trg_size, src_kps=src_kps, trg_kps=trg_kps,
        visible=np.ones(len(kp_ids), dtype=bool), threshold=float(max(x2 - x1, y2 - y1)), kp_ids=kp_ids,
    )


def load_spair(root: str | Path, split: str = "test", pairs_per_category: int = 20, seed: int = 42,
               categories: list[str] | None = None) -> list[Pair]:
    """SPair-71k pairs of ``split``, per category in sorted order (PROTOCOL §7.1).

    Files are ``sorted(PairAnnotation/<split>/*:<category>.json)``; with ``pairs_per_category`` > 0
    the reference's seeded draw with replacement picks them (duplicates kept). All keypoints listed
    in ``kps_ids`` are visible in both images, which is the reference's mutual visibility.
    """
    root = Path(root).expanduser()
    missing = [name for name in LAYOUT if not (root / name).is_dir()]
    if missing:
        raise DatasetError(
            f"SPair-71k not found at {root} (missing {', '.join(missing)}). See data_manifests/spair71k.yaml "
            f"for the source; unpack SPair-71k.tar.gz so that {root}/PairAnnotation/{split}/ exists, "
            f"or run the smoke profile (sdfuse reproduce --profile smoke).")
    pair_dir = root / "PairAnnotation" / split
    pairs: list[Pair] = []
    for category in categories or spair_categories(root):
        files = sorted(pair_dir.glob(f"*:{category}.json"))
        if not files:
            raise DatasetError(f"no {split} pairs for category {category!r} in {pair_dir}")
        pairs += [read_pair(files[i], root) for i in sample_indices(len(files), pairs_per_category, seed)]
    return pairs
