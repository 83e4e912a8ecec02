"""SPair-71k loader on the synthetic fixture, and the reference's sampling (PROTOCOL §7.1)."""
import json

import numpy as np
import pytest
from PIL import Image

from sdfuse.data.datasets import load_spair
from sdfuse.data.datasets.spair import sample_indices
from sdfuse.data.datasets.synthetic import apply, base_keypoints, base_pictures
from sdfuse.errors import DatasetError


def test_sampling_is_the_legacy_seeded_draw_with_replacement():
    assert sample_indices(10, 5, seed=42) == [6, 3, 7, 4, 6]       # np.random.seed(42); choice(10, 5)
    assert sample_indices(4, 0) == [0, 1, 2, 3]


def test_load_all_pairs(smoke_root):
    pairs = load_spair(smoke_root / "SPair-71k", pairs_per_category=0)
    assert len(pairs) == 36
    assert [p.category for p in pairs[::12]] == ["portrait", "present", "terrain"]
    first = pairs[0]
    assert first.pair_id == "000001-portrait_00-portrait_01:portrait"
    assert first.src_image.name == "portrait_00.jpg" and first.src_image.is_file()
    assert Image.open(first.trg_image).size == first.trg_size
    data = json.loads((smoke_root / "SPair-71k" / "PairAnnotation" / "test" / f"{first.pair_id}.json").read_text())
    x1, y1, x2, y2 = data["trg_bndbox"]
    assert first.threshold == max(x2 - x1, y2 - y1)
    assert first.kp_ids == (0, 1, 2, 3, 5, 6, 7, 8)              # keypoint 4 is hidden in image 1
    assert len(pairs[2].kp_ids) == 9                              # portrait_00 → portrait_02: all visible
    src, trg, thr = first.in_frame(168)
    assert src.shape == trg.shape == (8, 2)
    assert thr == pytest.approx(first.threshold * 168 / max(first.trg_size))


def test_sampled_pairs_follow_the_seeded_draw(smoke_root):
    pairs = load_spair(smoke_root / "SPair-71k", pairs_per_category=20, seed=42)
    assert len(pairs) == 60
    files = sorted((smoke_root / "SPair-71k" / "PairAnnotation" / "test").glob("*:present.json"))
    want = [files[i].stem for i in np.random.RandomState(42).choice(12, 20)]
    assert [p.pair_id for p in pairs[20:40]] == want
    assert len({p.pair_id for p in pairs[20:40]}) < 20            # duplicates are kept


def test_ground_truth_is_correct_by_construction(smoke_root):
    picture = base_pictures()["present"]
    kps = base_keypoints(*picture.size)
    pair = load_spair(smoke_root / "SPair-71k", pairs_per_category=0, categories=["present"])[2]
    image = np.asarray(Image.open(pair.trg_image).convert("RGB"), dtype=float)
    base = np.asarray(picture, dtype=float)
    for (x, y), k in zip(pair.trg_kps, pair.kp_ids):
        bx, by = np.round(kps[k]).astype(int)
        here = image[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].mean((0, 1))
        there = base[by - 2:by + 3, bx - 2:bx + 3].mean((0, 1))
        assert np.abs(here - there).mean() < 40


def test_affine_helper():
    affine = np.array([[2.0, 0, 1], [0, 3, -1]])
    assert apply(affine, np.array([[1.0, 1.0]])).tolist() == [[3.0, 2.0]]


def test_missing_dataset_names_the_manifest(tmp_path):
    with pytest.raises(DatasetError, match="data_manifests/spair71k.yaml"):
        load_spair(tmp_path / "nowhere")


def test_malformed_pair_json_names_the_file(smoke_root, tmp_path):
    import shutil

    root = tmp_path / "SPair-71k"
    shutil.copytree(smoke_root / "SPair-71k", root)
    bad = sorted((root / "PairAnnotation" / "test").glob("*:terrain.json"))[0]
    bad.write_text(json.dumps({"category": "terrain", "src_kps": [[1, 2]]}))
    with pytest.raises(DatasetError, match=bad.name):
        load_spair(root, pairs_per_category=0)


def test_a_run_draws_its_pairs_with_the_reference_seed_by_default(smoke_root, tmp_path):
    """Without a seed parameter a run samples as the reference: RandomState(42) per category (PROTOCOL §7.1)."""
    from sdfuse.profiles.runs import resolve

    run = resolve("smoke", cache_dir=tmp_path, progress=False)
    folder = smoke_root / "SPair-71k" / "PairAnnotation" / "test"
    want = []
    for category in ("portrait", "present", "terrain"):
        files = sorted(folder.glob(f"*:{category}.json"))
        want += [files[i].stem for i in np.random.RandomState(42).choice(len(files), 20)]
    assert [p.pair_id for p in run.spair_pairs()] == want
