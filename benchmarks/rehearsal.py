"""The whole rehearsal: every supplementary table at the paper's settings on the real architectures
(seeded random weights), timed stage by stage; ``make rehearse``.

    python -m benchmarks.rehearsal              # every table, then every notebook (about an hour on 2 CPU cores)
    python -m benchmarks.rehearsal --only table1,table8

Stages, each with its wall time, the images it sent through SD and DINOv2 and the process's peak RSS:

1. ``assets``: building (or finding) the rehearsal models and fixtures (:func:`sdfuse.profiles.assets.ensure_assets`);
2. one stage per table function of :mod:`sdfuse.tables`, in the book's order, on an empty feature
   cache: ``cold_s`` includes the extraction of the images it is the first to need, ``warm_s`` is the
   same function again on the filled cache (evaluation alone);
3. ``notebooks``: ``sdfuse reproduce --profile rehearsal`` on a temporary copy of the book's sources
   with the filled cache: per notebook wall time (kernel start-up included) and the kernels' peak RSS.

The result is the ``rehearsal`` section of ``benchmark.json`` (``--out``); the book's run page shows it.
After every stage the section is written with ``status: partial`` and the stages so far, so an
interrupted rehearsal keeps what it measured; the totals appear only when every stage has run.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .common import GIB, CpuShare, PeakRSS

STAGES = ("table1", "table2", "table3", "alpha_sweep", "outcomes", "table5", "table8")
"""Table functions in the order the book runs them (the SPair-71k tables first, then PF-Pascal/TSS, CUB)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rehearsal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=lambda text: [s.strip() for s in text.split(",")],
                        help=f"comma-separated tables ({', '.join(STAGES)}); default: all, then the notebooks")
    parser.add_argument("--out", type=Path, default=None, help="folder of benchmark.json (default: the benchmark's)")
    return parser


def _stage(fn) -> tuple[object, dict]:
    with PeakRSS(interval=0.05) as memory, CpuShare() as cpu:
        value = fn()
    return value, {"wall_s": round(cpu.wall_s, 1), "peak_rss_gib": round(memory.peak / GIB, 2),
                   "other_processes_cpu_fraction": round(cpu.other_cpu_fraction, 3)}


def run(only: list[str] | None = None, on_stage=lambda partial: None) -> dict:
    from sdfuse import tables
    from sdfuse.profiles.assets import ensure_assets
    from sdfuse.profiles.runs import resolve, sdfuse_home
    from sdfuse.profiles.parameters import NOTEBOOKS
    from sdfuse.book.runner import reproduce

    selected = only or list(STAGES)
    unknown = sorted(set(selected) - set(STAGES))
    if unknown:
        raise SystemExit(f"error: unknown table(s) {unknown}; choose from {', '.join(STAGES)}")
    stages: dict[str, dict] = {}
    start = time.perf_counter()
    _, stages["assets"] = _stage(lambda: ensure_assets("rehearsal", sdfuse_home() / "rehearsal"))
    with tempfile.TemporaryDirectory(prefix="sdfuse-rehearsal-") as tmp:
        cache = Path(tmp) / "features"
        run_ = resolve("rehearsal", cache_dir=str(cache), results_dir=str(Path(tmp) / "results"), progress=True)
        for name in selected:
            before = (run_.sd_features.forward_passes, run_.dino_features.forward_passes)
            _, cold = _stage(lambda: getattr(tables, name)(run_))
            _, warm = _stage(lambda: getattr(tables, name)(run_))
            stages[name] = {"cold_s": cold["wall_s"], "warm_s": warm["wall_s"],
                            "sd_images_extracted": run_.sd_features.forward_passes - before[0],
                            "dino_images_extracted": run_.dino_features.forward_passes - before[1],
                            "peak_rss_gib": max(cold["peak_rss_gib"], warm["peak_rss_gib"]),
                            "other_processes_cpu_fraction": cold["other_processes_cpu_fraction"]}
            print(f"[rehearsal] {name}: {cold['wall_s']:.0f} s cold, {warm['wall_s']:.1f} s warm", flush=True)
            on_stage({"profile": "rehearsal", "grid": 60, "complete": False, "stages": dict(stages)})
        device = run_.sd.device
        del run_
        book = Path(tmp) / "book-root"
        book.mkdir()
        for item in ("_config.yml", "_toc.yml"):
            shutil.copy(Path(__file__).resolve().parents[1] / item, book / item)
        names = [n for n in NOTEBOOKS if n in selected] if only else None
        notebooks_start = time.perf_counter()
        runs = reproduce("rehearsal", only=names, parameters={"cache_dir": str(cache)}, root=book)
        children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GIB
        stages["notebooks"] = {"wall_s": round(time.perf_counter() - notebooks_start, 1),
                               "per_notebook_s": {r.notebook: round(r.wall_time_s, 1) for r in runs},
                               "status": {r.notebook: r.status for r in runs},
                               "kernels_peak_rss_gib": round(children_peak, 2)}
    extracted = sum(stages[n]["sd_images_extracted"] for n in selected)
    extraction_s = sum(stages[n]["cold_s"] - stages[n]["warm_s"] for n in selected)
    return {"profile": "rehearsal", "grid": 60, "complete": True, "device": device, "stages": stages, "tables": selected,
            "unique_images": extracted, "seconds_per_image": round(extraction_s / extracted, 1) if extracted else None,
            "wall_s": round(time.perf_counter() - start, 1),
            "peak_rss_gib": max([s.get("peak_rss_gib", 0) for s in stages.values()]
                                + [stages["notebooks"]["kernels_peak_rss_gib"]]),
            "notebooks_ok": all(s == "ok" for s in stages["notebooks"]["status"].values())}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .run import DEFAULT_OUT, write_section

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = args.out or DEFAULT_OUT
    with CpuShare() as cpu:
        result = run(args.only, on_stage=lambda partial: write_section(out, "rehearsal", partial, mode="rehearsal",
                                                                        cpu=cpu.so_far(), status="partial"))
    path = write_section(out, "rehearsal", result, mode="rehearsal", cpu=cpu)
    print(f"[rehearsal] {result['unique_images']} images at {result['seconds_per_image']} s each, "
          f"{result['wall_s']:.0f} s in all, peak RSS {result['peak_rss_gib']} GiB; wrote {path}")
    return 0 if result["notebooks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
