"""The prepared GPU check (``python -m benchmarks.gpu``) never rots: its CPU dry run runs in the suite."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_its_section(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    gpu = report["sections"]["gpu"]["result"]
    assert (gpu["device"], gpu["quick"], gpu["grid"], gpu["images"]) == ("cpu", True, 12, 2)
    assert set(gpu["extraction"]) == {"float32", "float16", "bfloat16"}
    assert all(row["seconds_per_image_median"] > 0 for row in gpu["extraction"].values())
    for dtype in ("float16", "bfloat16"):
        parity = gpu["parity_vs_float32"][dtype]
        assert set(parity["identical_nn_fraction"]) == {"SD", "Fuse"}
        assert all(0 <= f <= 1 for f in parity["identical_nn_fraction"].values())
    assert gpu["table1_per_pair_s"] > 0
    # the projection is the stated sum: unique images × s/image + pair-method evaluations × per-pair time / 14
    from benchmarks.gpu import METHODS_PER_PAIR, TABLE1_METHODS
    from benchmarks.passes import PAPER_SIZES
    unique = sum(size["unique_images"] for size in PAPER_SIZES.values())
    evaluations = sum(PAPER_SIZES[d]["pairs"] * m for d, m in METHODS_PER_PAIR.items())
    seconds = unique * gpu["extraction"]["float32"]["seconds_per_image_median"] + evaluations * gpu["table1_per_pair_s"] / TABLE1_METHODS
    assert abs(gpu["supplement_projection_min"]["float32"] - seconds / 60) < 0.1 + 0.01 * seconds / 60
    assert "gpu_table1_per_pair_s" in {row["id"] for row in report["summary"]}
    assert (tmp_path / "benchmark.md").is_file()
