"""The rehearsal profile: the paper path at the real sizes (SD v1.5 and DINOv2 ViT-B/14 with seeded random
weights, saved in the real layouts and loaded back from them, G = 60, 960/840 px, 4 crops of 512 px,
PCA 256, fp32) through ``sdfuse reproduce``, on one real-size pair. About 3 minutes on 2 CPU cores."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sdfuse.data.datasets.synthetic import REAL_SIZE_SCALE, make_spair_like
from sdfuse.profiles.parameters import NOTEBOOK_DIR
from sdfuse.profiles.runs import resolve

SDFUSE = str(Path(sys.executable).parent / "sdfuse")


@pytest.fixture(scope="module")
def rehearsal_run(tmp_path_factory):
    """Table 1 of the rehearsal profile on one SPair-format pair (two images, long sides 504 and 378 px)."""
    root = tmp_path_factory.mktemp("rehearsal")
    for name in ("_config.yml", "_toc.yml"):
        (root / name).write_text((NOTEBOOK_DIR.parent / name).read_text())
    data = make_spair_like(root / "SPair-71k", images_per_category=2, scale=REAL_SIZE_SCALE, categories=("portrait",))
    args = ["-p", "pairs_per_category=1", "-p", f"data_root={data}", "-p", f"cache_dir={root / 'cache'}"]
    done = subprocess.run([SDFUSE, "reproduce", "--profile", "rehearsal", "--only", "table1", "--root", str(root),
                           *args], capture_output=True, text=True, timeout=1500)
    return root, data, done


def test_table1_runs_at_the_paper_settings(rehearsal_run):
    root, data, done = rehearsal_run
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [["ok", "01_unet_layers"], ["ok", "00_status"],
                                                                       ["ok", "99_run"]]
    provenance = json.loads((root / "results" / "rehearsal" / "table1.provenance.json").read_text())
    assert {k: provenance[k] for k in ("grid", "sd_input_px", "dino_input_px", "pca_dim", "dtype", "dino_blocks")} == \
        {"grid": 60, "sd_input_px": 960, "dino_input_px": 840, "pca_dim": 256, "dtype": "float32", "dino_blocks": [9, 11]}
    assert provenance["sd_model"].endswith("rehearsal/models/sd")
    page = (root / "book" / "tables" / "01_unet_layers.ipynb").read_text()
    assert "real architectures, random weights: checks the paper path, not the paper" in page


def test_the_pair_is_evaluated_on_its_mutually_visible_keypoints(rehearsal_run):
    root, data, _ = rehearsal_run
    table = pd.read_csv(root / "results" / "rehearsal" / "table1.csv")
    assert table["setting"].nunique() == 7 and set(table["method"]) == {"SD", "Fuse"}
    files = sorted((data / "PairAnnotation" / "test").glob("*:portrait.json"))
    [drawn] = np.random.RandomState(42).choice(len(files), 1)      # the reference's draw (PROTOCOL §7.1)
    keypoints = len(json.loads(files[drawn].read_text())["kps_ids"])
    assert keypoints > 0
    hits = table["value"] * keypoints / 100                        # every PCK is a count of hits over K keypoints
    assert ((hits - hits.round()).abs() < 1e-9).all() and hits.between(0, keypoints).all()
    overall = table[table["category"] == "all"].pivot_table(index=["setting", "method", "alpha"], columns="aggregate",
                                                            values="value")
    assert (overall["keypoint_pooled"] - overall["per_image"]).abs().max() < 1e-9   # one pair: the same number


def test_cached_features_have_the_real_shapes(rehearsal_run):
    root, data, _ = rehearsal_run
    run = resolve("rehearsal", data_root=str(data), cache_dir=str(root / "cache"), pairs_per_category=1, device="cpu",
                  progress=False)
    [pair] = run.spair_pairs()
    for image in (pair.src_image, pair.trg_image):
        sd, dino = run.sd_features.get(image), run.dino_features.get(image)
        assert {k: tuple(v.shape) for k, v in sd.items()} == {2: (1280, 15, 15), 5: (1280, 30, 30), 8: (640, 60, 60)}
        assert {k: tuple(v.shape) for k, v in dino.items()} == {9: (768, 60, 60), 11: (768, 60, 60)}
        assert all(v.isfinite().all() for v in [*sd.values(), *dino.values()])
    assert run.sd_features.forward_passes == run.dino_features.forward_passes == 0     # all read from the cache
