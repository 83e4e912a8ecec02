"""Deterministic SPair-71k-format fixtures built from photographs that matplotlib ships.

Each category is one base picture (a photograph, a shaded terrain model, a product photo); each
image of the category is that picture under a known random similarity warp on a textured
background, so ground-truth correspondences are exact by construction. Files follow SPair-71k's
layout and JSON keys so that the real loader reads them.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LightSource
from PIL import Image, ImageFilter

SAMPLE_DATA = Path(matplotlib.get_data_path()) / "sample_data"
CANVASES = ((224, 168), (168, 224), (200, 200), (240, 160))
"""Output sizes (W, H): landscape, portrait and square, so every padding branch runs."""
REAL_SIZE_SCALE = 2.1
"""Canvas scale of the rehearsal fixtures: long sides 504 px, about SPair-71k's and PASCAL's 500."""
WARPS_FILE = "synthetic_warps.json"
"""Written beside each fixture: every image's base picture and the 2×3 forward map (base → image pixels)."""


def scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """A (W, H) canvas size times ``scale``, rounded to whole pixels."""
    return round(size[0] * scale), round(size[1] * scale)


def base_pictures() -> dict[str, Image.Image]:
    """The three base pictures, keyed by the synthetic category name."""
    portrait = Image.open(SAMPLE_DATA / "grace_hopper.jpg").convert("RGB")
    dem = np.load(SAMPLE_DATA / "jacksboro_fault_dem.npz")["elevation"]
    shaded = LightSource(azdeg=315, altdeg=45).shade(dem, cmap=matplotlib.colormaps["gist_earth"],
                                                     blend_mode="overlay", vert_exag=0.05)
    terrain = Image.fromarray((shaded[..., :3] * 255).astype(np.uint8))
    pack = Image.open(SAMPLE_DATA / "Minduka_Present_Blue_Pack.png").convert("RGBA")
    present = Image.new("RGBA", pack.size, (255, 255, 255, 255))
    present.alpha_composite(pack)
    return {"portrait": portrait, "present": present.convert("RGB").resize((256, 256), Image.LANCZOS),
            "terrain": terrain}


def base_keypoints(width: int, height: int) -> np.ndarray:
    """Nine keypoints on a 3×3 lattice at 20/50/80 % of the base picture, ids 0..8."""
    fractions = np.array([0.2, 0.5, 0.8])
    xs, ys = np.meshgrid(fractions * (width - 1), fractions * (height - 1))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _similarity(rng: np.random.Generator, base: tuple[int, int], canvas: tuple[int, int]) -> np.ndarray:
    """A 2×3 forward affine map (base → canvas): rotation ±12°, the picture covering 55–80 % of the canvas."""
    angle = np.deg2rad(rng.uniform(-12, 12))
    scale = rng.uniform(0.55, 0.8) * min(canvas[0] / base[0], canvas[1] / base[1])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre_base = np.array(base) / 2
    slack = (np.array(canvas) - scale * np.array(base)) * 0.25
    centre = np.array(canvas) / 2 + rng.uniform(-1, 1, 2) * np.maximum(slack, 0)
    return np.hstack([rot, (centre - rot @ centre_base)[:, None]])


def _background(rng: np.random.Generator, canvas: tuple[int, int]) -> Image.Image:
    noise = rng.integers(70, 186, size=(canvas[1] // 20 + 2, canvas[0] // 20 + 2, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize(canvas, Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))


def render(picture: Image.Image, affine: np.ndarray, canvas: tuple[int, int], background: Image.Image) -> Image.Image:
    """Warp ``picture`` by the forward ``affine`` onto ``background`` (bicubic, inverse mapping)."""
    full = np.vstack([affine, [0, 0, 1]])
    inverse = np.linalg.inv(full)[:2].ravel()
    warped = picture.transform(canvas, Image.AFFINE, tuple(inverse), resample=Image.BICUBIC)
    mask = Image.new("L", picture.size, 255).transform(canvas, Image.AFFINE, tuple(inverse), resample=Image.BILINEAR)
    out = background.copy()
    out.paste(warped, (0, 0), mask)
    return out


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Forward-map (N, 2) points by a 2×3 affine."""
    return points @ affine[:, :2].T + affine[:, 2]


def write_warps(root: Path, warps: dict[str, tuple[str, tuple[int, int], np.ndarray]]) -> None:
    """Record {image path relative to ``root``: (base picture, its (W, H), 2×3 affine)} as :data:`WARPS_FILE`,
    so tests know the true correspondence of every pixel."""
    record = {path: {"picture": name, "picture_size": list(size), "affine": np.asarray(affine).tolist()}
              for path, (name, size, affine) in warps.items()}
    (Path(root) / WARPS_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))


def make_spair_like(root: str | Path, images_per_category: int = 4, seed: int = 0, scale: float = 1.0,
                    categories: tuple[str, ...] | None = None) -> Path:
    """Write an SPair-71k-format dataset under ``root`` (test split only) and return ``root``.

    Keypoint 4 (the centre) is hidden in image 1 of every category so that visibility filtering
    runs; the pair JSONs list only the keypoints visible in both images, as SPair does. ``scale``
    multiplies the canvas sizes; ``categories`` keeps a subset of the base pictures. The warps are
    recorded in :data:`WARPS_FILE`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    pair_dir = root / "PairAnnotation" / "test"
    pair_dir.mkdir(parents=True, exist_ok=True)
    (root / "Layout" / "large").mkdir(parents=True, exist_ok=True)
    pair_names = []
    pair_number = 0
    warps = {}
    for category, picture in base_pictures().items():
        if categories is not None and category not in categories:
            continue
        (root / "JPEGImages" / category).mkdir(parents=True, exist_ok=True)
        (root / "ImageAnnotation" / category).mkdir(parents=True, exist_ok=True)
        base_kps = base_keypoints(*picture.size)
        corners = np.array([[0, 0], [picture.width, 0], [0, picture.height], [picture.width, picture.height]])
        images = []
        for j in range(images_per_category):
            canvas = scaled(CANVASES[(j + len(category)) % len(CANVASES)], scale)
            affine = _similarity(rng, picture.size, canvas)
            name = f"{category}_{j:02d}"
            warps[f"JPEGImages/{category}/{name}.jpg"] = (category, picture.size, affine)
            render(picture, affine, canvas, _background(rng, canvas)).save(
                root / "JPEGImages" / category / f"{name}.jpg", quality=95)
            kps = np.round(apply(affine, base_kps)).astype(int)
            box = apply(affine, corners)
            bbox = [int(max(0, box[:, 0].min())), int(max(0, box[:, 1].min())),
                    int(min(canvas[0] - 1, box[:, 0].max())), int(min(canvas[1] - 1, box[:, 1].max()))]
            visible = [not (j == 1 and k == 4) for k in range(len(kps))]
            annotation = {
                "filename": f"{name}.jpg", "src_database": "synthetic", "category": category,
                "image_width": canvas[0], "image_height": canvas[1], "bndbox": bbox,
                "kps": {str(k): (kps[k].tolist() if visible[k] else None) for k in range(len(kps))},
            }
            (root / "ImageAnnotation" / category / f"{name}.json").write_text(json.dumps(annotation))
            images.append((name, canvas, kps, bbox, visible))
        for s, (sname, ssize, skps, sbox, svis) in enumerate(images):
            for t, (tname, tsize, tkps, tbox, tvis) in enumerate(images):
                if s == t:
                    continue
                pair_number += 1
                ids = [k for k in range(len(skps)) if svis[k] and tvis[k]]
                stem = f"{pair_number:06d}-{sname}-{tname}:{category}"
                pair = {
                    "filename": f"{stem}.json", "src_imname": f"{sname}.jpg", "trg_imname": f"{tname}.jpg",
                    "src_imsize": [*ssize, 3], "trg_imsize": [*tsize, 3],
                    "src_bndbox": sbox, "trg_bndbox": tbox, "category": category,
                    "src_pose": "Unspecified", "trg_pose": "Unspecified", "mirror": 0,
                    "viewpoint_variation": 0, "scale_variation": 0, "truncation": 0, "occlusion": 0,
                    "src_kps": skps[ids].tolist(), "trg_kps": tkps[ids].tolist(), "kps_ids": [str(k) for k in ids],
                }
                (pair_dir / f"{stem}.json").write_text(json.dumps(pair))
                pair_names.append(stem)
    (root / "Layout" / "large" / "test.txt").write_text("\n".join(pair_names) + "\n")
    write_warps(root, warps)
    return root
