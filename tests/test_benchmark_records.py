"""The benchmark's bookkeeping: sections written stage by stage, the pinned allocator recorded."""
import ctypes
import json
import time

import pytest

from benchmarks.common import CpuShare, pin_allocator, thread_settings
from benchmarks.run import write_section


def test_partial_section_keeps_its_stages_and_shows_no_totals_until_complete(tmp_path):
    with CpuShare() as cpu:
        time.sleep(0.05)
        partial = {"profile": "rehearsal", "complete": False, "stages": {"table1": {"cold_s": 800.0}}}
        write_section(tmp_path, "rehearsal", partial, mode="rehearsal", cpu=cpu.so_far(), status="partial")
        report = json.loads((tmp_path / "benchmark.json").read_text())
        section = report["sections"]["rehearsal"]
        assert section["status"] == "partial" and section["result"]["stages"] == partial["stages"]
        assert section["cpu"]["wall_s"] >= 0.05
        assert "rehearsal_wall_s" not in {row["id"] for row in report["summary"]}
        assert "| rehearsal | partial |" in (tmp_path / "benchmark.md").read_text()
    complete = {**partial, "complete": True, "wall_s": 1234.5, "seconds_per_image": 61.0, "peak_rss_gib": 7.1}
    write_section(tmp_path, "rehearsal", complete, mode="rehearsal", cpu=cpu)
    report = json.loads((tmp_path / "benchmark.json").read_text())
    rows = {row["id"]: row for row in report["summary"]}
    assert report["sections"]["rehearsal"]["status"] == "measured"
    assert (rows["rehearsal_wall_s"]["value"], rows["rehearsal_seconds_per_image"]["value"]) == (1234.5, 61.0)


def test_fixed_allocator_is_applied_and_recorded():
    try:
        ctypes.CDLL("libc.so.6").gnu_get_libc_version
    except (OSError, AttributeError):
        pytest.skip("LOUD SKIP: not glibc; the fixed malloc thresholds are a glibc setting")
    assert pin_allocator("adaptive") == thread_settings()["allocator"] == {"malloc": "adaptive"}
    setting = pin_allocator("fixed")          # for the rest of this test process: harmless, and recorded
    assert setting == {"malloc": "fixed", "mmap_threshold": 32 * 2 ** 20, "trim_threshold": 2 ** 30, "applied": True}
    assert thread_settings()["allocator"] == setting


def test_every_benchmark_module_imports_and_its_lazy_imports_resolve():
    """The benchmarks run outside the suite, so a moved library name would break them unseen: import each
    module, and resolve every ``from sdfuse… import …`` they defer into functions."""
    import ast
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    for path in sorted(root.glob("*.py")):
        importlib.import_module(f"benchmarks.{path.stem}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sdfuse"):
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)
                           and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
                assert not missing, f"{path.name}: {node.module} has no {missing}"
