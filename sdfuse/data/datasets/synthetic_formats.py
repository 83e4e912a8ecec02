"""Deterministic PF-PASCAL, TSS and CUB-200-2011 fixtures in the real on-disk formats.

Like :mod:`sdfuse.data.datasets.synthetic`, every image is one of matplotlib's sample pictures under
a known random similarity warp on a textured background, so the ground truth (keypoints, dense
flow, boxes) is exact by construction, and each image's warp is recorded
(:data:`~sdfuse.data.datasets.synthetic.WARPS_FILE`).
Each writer returns the dataset folder its loader takes.
Point conventions: keypoints are the warped 0-based pixel positions of lattice points (written
1-based for CUB, whose annotations are 1-based); TSS flows use PIL's pixel-centre convention
(pixel i covers [i, i+1)), which is the one its affine warp uses, so they are exact inverses.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from .flo import write_flo
from .synthetic import (CANVASES, _background, _similarity, apply, base_keypoints, base_pictures, render,
                        scaled, write_warps)

PF_FIXTURE_CLASSES = {"present": 1, "portrait": 15, "terrain": 20}
"""Base picture → PF-PASCAL class id (aeroplane, person, tvmonitor: the first, a middle and the last id)."""
PF_KEYPOINTS = {"present": 9, "portrait": 9, "terrain": 6}
"""Keypoints listed per class: the first K of the 3×3 lattice, so K differs between classes."""
PF_PAIRS = ((0, 1), (0, 2), (2, 1))
"""(source, target) image indices of each class's pairs."""
PF_HIDDEN = ("portrait", 1, 4)
"""(class, image, keypoint) written as −1;−1: the centre of person image 1 is padding."""

TSS_FIXTURE = {
    "FG3DCar": (("portrait", (224, 168), (168, 224)), ("present", (200, 200), (240, 160))),
    "JODS": (("terrain", (240, 160), (168, 224)),),
    "PASCAL": (("present", (168, 224), (200, 200)),),
}
"""Pair folders per subset: (base picture, image1 size, image2 size); sizes differ within each pair."""

CUB_FIXTURE_CLASSES = (("001.Black_footed_Albatross", "portrait"), ("002.Laysan_Albatross", "present"),
                       ("003.Sooty_Albatross", "terrain"))
"""(class folder, base picture): the real folder names of classes 001–003."""
CUB_IMAGES_PER_CLASS = 4
"""Images per class in ``images.txt`` and ``part_locs.txt``."""
CUB_TRAIN_IMAGE = 1
"""Index of each class's training image (ids 2, 6, 10), left out of the test split file."""
CUB_CANVASES = ((240, 160), (200, 200), (168, 224), (224, 168))


def _warp_picture(rng: np.random.Generator, picture: Image.Image,
                  canvas: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """The picture under a random similarity on a textured background, and the 2×3 map."""
    affine = _similarity(rng, picture.size, canvas)
    return render(picture, affine, canvas, _background(rng, canvas)), affine


def make_pfpascal_like(root: str | Path, seed: int = 0, scale: float = 1.0) -> Path:
    """Write ``root/PF-dataset-PASCAL`` (JPEGImages + test_pairs_pf_pascal.csv) and return that folder.

    Three classes of three images, 9 pairs; keypoint k of every image is lattice point k of the
    class picture, written with two decimals; one keypoint is −1 padding (:data:`PF_HIDDEN`).
    ``scale`` multiplies the canvas sizes.
    """
    folder = Path(root) / "PF-dataset-PASCAL"
    (folder / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [["source_image", "target_image", "class", "XA", "YA", "XB", "YB"]]
    warps = {}
    for number, (name, picture) in enumerate(base_pictures().items()):
        kps = base_keypoints(*picture.size)[:PF_KEYPOINTS[name]]
        files, points = [], []
        for j in range(3):
            image, affine = _warp_picture(rng, picture, scaled(CANVASES[(j + number) % len(CANVASES)], scale))
            filename = f"{name}_{j:02d}.jpg"
            image.save(folder / "JPEGImages" / filename, quality=95)
            warps[f"JPEGImages/{filename}"] = (name, picture.size, affine)
            warped = np.round(apply(affine, kps), 2)
            if (name, j) == PF_HIDDEN[:2]:
                warped[PF_HIDDEN[2]] = -1
            files.append(f"PF-dataset-PASCAL/JPEGImages/{filename}")
            points.append(warped)
        for s, t in PF_PAIRS:
            columns = [";".join(f"{v:g}" for v in values)
                       for values in (points[s][:, 0], points[s][:, 1], points[t][:, 0], points[t][:, 1])]
            rows.append([files[s], files[t], str(PF_FIXTURE_CLASSES[name]), *columns])
    with (folder / "test_pairs_pf_pascal.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    write_warps(folder, warps)
    return folder


def _tss_direction(affine_src: np.ndarray, affine_trg: np.ndarray, picture_size: tuple[int, int],
                   src_size: tuple[int, int], trg_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """GT flow on the target grid (target → source) and its 0/255 mask (PROTOCOL §8).

    With pixel centres c = index + 0.5, the source point of c is M·c for M = A_src ∘ A_trg⁻¹, so
    flow = M·c − c. The mask keeps pixels whose picture point lies inside the picture and whose
    source point lies inside the source image, both with a one-pixel margin.
    """
    width, height = trg_size
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    inverse_trg = np.linalg.inv(np.vstack([affine_trg, [0, 0, 1]]))[:2]
    on_picture = apply(inverse_trg, centres)
    in_source = apply(affine_src, on_picture)

    def inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return np.all((points >= 1) & (points <= np.array(size) - 1), axis=1)

    valid = inside(on_picture, picture_size) & inside(in_source, src_size)
    flow = (in_source - centres).reshape(height, width, 2).astype(np.float32)
    return flow, np.where(valid, 255, 0).astype(np.uint8).reshape(height, width)


def make_tss_like(root: str | Path, seed: int = 0, scale: float = 1.0) -> Path:
    """Write ``root/TSS_CVPR2016/{FG3DCar,JODS,PASCAL}/<pair>/`` (:data:`TSS_FIXTURE`) and return that folder.

    Each pair folder holds image1.png, image2.png, flow1.flo (on image1, pointing into image2),
    flow2.flo (on image2, into image1), mask1.png and mask2.png (0/255 where the picture is).
    ``scale`` multiplies the image sizes.
    """
    folder = Path(root) / "TSS_CVPR2016"
    rng = np.random.default_rng(seed + 1)
    pictures = base_pictures()
    warps = {}
    for subset, pairs in TSS_FIXTURE.items():
        for number, (name, size1, size2) in enumerate(pairs, start=1):
            size1, size2 = scaled(size1, scale), scaled(size2, scale)
            pair_dir = folder / subset / f"{name}{number:02d}"
            pair_dir.mkdir(parents=True, exist_ok=True)
            picture = pictures[name]
            image1, affine1 = _warp_picture(rng, picture, size1)
            image2, affine2 = _warp_picture(rng, picture, size2)
            image1.save(pair_dir / "image1.png")
            image2.save(pair_dir / "image2.png")
            for index, affine in ((1, affine1), (2, affine2)):
                warps[f"{subset}/{pair_dir.name}/image{index}.png"] = (name, picture.size, affine)
            for index, (a_src, a_trg, s_size, t_size) in ((1, (affine2, affine1, size2, size1)),
                                                         (2, (affine1, affine2, size1, size2))):
                flow, mask = _tss_direction(a_src, a_trg, picture.size, s_size, t_size)
                write_flo(pair_dir / f"flow{index}.flo", flow)
                Image.fromarray(mask).save(pair_dir / f"mask{index}.png")
    write_warps(folder, warps)
    return folder


def cub_part_positions(width: int, height: int) -> np.ndarray:
    """15 parts on a 5×3 lattice at 15–85 % × 20–80 % of the picture, 0-based pixels, row-major."""
    xs, ys = np.meshgrid(np.linspace(0.15, 0.85, 5) * (width - 1), np.array([0.2, 0.5, 0.8]) * (height - 1))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _cub_bbox(affine: np.ndarray, picture_size: tuple[int, int], canvas: tuple[int, int]) -> tuple[int, ...]:
    """1-based inclusive (x1, y1, x2, y2) around the warped picture, clipped to the image."""
    width, height = picture_size
    corners = apply(affine, np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=float))
    low = np.maximum(np.floor(corners.min(axis=0)).astype(int) + 1, 1)
    high = np.minimum(np.ceil(corners.max(axis=0)).astype(int), np.array(canvas))
    return int(low[0]), int(low[1]), int(high[0]), int(high[1])


def make_cub_like(root: str | Path, seed: int = 0, scale: float = 1.0) -> Path:
    """Write ``root/CUB_200_2011`` in CUB + CMR/ACSM layout and return that folder (PROTOCOL §9, §11).

    Three classes of :data:`CUB_IMAGES_PER_CLASS` images (ids 1…12 in class order) with
    images.txt, bounding_boxes.txt (CUB's 0-based x y w h), parts/part_locs.txt (1-based x, y;
    parts (j, j + 7) of image j invisible, written as 0 0 0) and
    ``cachedir/cub/data/test_cub_cleaned.mat``, which lists every image but the training one
    of each class, with the CMR fields (id and bbox as doubles, as MATLAB writes them). ``scale``
    multiplies the image sizes.
    """
    folder = Path(root) / "CUB_200_2011"
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    (folder / "cachedir" / "cub" / "data").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 2)
    pictures = base_pictures()
    images, boxes, part_lines, records, warps = [], [], [], [], {}
    image_id = 0
    for class_number, (class_folder, name) in enumerate(CUB_FIXTURE_CLASSES, start=1):
        (folder / "images" / class_folder).mkdir(parents=True, exist_ok=True)
        picture = pictures[name]
        parts = cub_part_positions(*picture.size)
        for j in range(CUB_IMAGES_PER_CLASS):
            image_id += 1
            canvas = scaled(CUB_CANVASES[(j + class_number) % len(CUB_CANVASES)], scale)
            image, affine = _warp_picture(rng, picture, canvas)
            rel_path = f"{class_folder}/{class_folder.split('.')[1]}_{image_id:04d}.jpg"
            image.save(folder / "images" / rel_path, quality=95)
            warps[f"images/{rel_path}"] = (name, picture.size, affine)
            visible = np.array([k not in (j, j + 7) for k in range(len(parts))])
            kps = np.where(visible[:, None], np.round(apply(affine, parts) + 1, 1), 0.0)
            x1, y1, x2, y2 = _cub_bbox(affine, picture.size, canvas)
            images.append(f"{image_id} {rel_path}")
            boxes.append(f"{image_id} {x1 - 1:.1f} {y1 - 1:.1f} {x2 - x1 + 1:.1f} {y2 - y1 + 1:.1f}")
            part_lines += [f"{image_id} {k + 1} {x:.1f} {y:.1f} {int(v)}"
                           for k, ((x, y), v) in enumerate(zip(kps, visible))]
            if j != CUB_TRAIN_IMAGE:
                records.append((float(image_id), rel_path, 0.0, 1.0,
                                {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)},
                                float(canvas[0]), float(canvas[1]), np.vstack([kps.T, visible]),
                                _picture_mask(affine, picture.size, canvas), float(class_number)))
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (folder / "parts" / "part_locs.txt").write_text("\n".join(part_lines) + "\n")
    fields = ("id", "rel_path", "train", "test", "bbox", "width", "height", "parts", "mask", "class_id")
    table = np.zeros((1, len(records)), dtype=[(field, "O") for field in fields])
    for index, record in enumerate(records):
        table[0, index] = record
    scipy.io.savemat(folder / "cachedir" / "cub" / "data" / "test_cub_cleaned.mat", {"images": table},
                     do_compression=True)
    write_warps(folder, warps)
    return folder


def _picture_mask(affine: np.ndarray, picture_size: tuple[int, int], canvas: tuple[int, int]) -> np.ndarray:
    """0/1 uint8 mask of where the warped picture lies, as the CMR ``mask`` field."""
    inverse = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2].ravel()
    mask = Image.new("L", picture_size, 1).transform(canvas, Image.AFFINE, tuple(inverse), resample=Image.NEAREST)
    return np.asarray(mask, dtype=np.uint8)
