"""Run the sdfuse benchmark and write ``results/benchmark/benchmark.json`` and ``benchmark.md``.

    python -m benchmarks.run            # default: everything but the smoke end-to-end run (~3-4 min on 2 idle cores)
    python -m benchmarks.run --quick    # no real-size model forwards, no end-to-end run (~1-2 min)
    python -m benchmarks.run --full     # 4 repetitions, the real 960-px 4-crop pass, the end-to-end run (~15 min)
    python -m benchmarks.run --only matching_cost,cache_bytes

A section that is not run keeps its previous result from the existing JSON, marked
``"status": "carried_over"`` with its own ``measured_at``. The JSON layout is documented in
``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .common import CpuShare, machine, now_utc, pin_allocator, pin_threads, process_peak_rss_gib, thread_settings

SCHEMA = "sdfuse-benchmark/2"
SECTIONS = ("backbone_passes", "extraction_cost", "matching_cost", "smoke_tables", "cache_bytes", "precision_parity",
            "smoke_end_to_end", "cache_verification", "bootstrap_cost",
            "match_command")
MODES = {
    "quick": {"backbone_passes", "matching_cost", "smoke_tables", "cache_bytes", "precision_parity"},
    "default": {"backbone_passes", "matching_cost", "smoke_tables", "cache_bytes", "precision_parity",
                "extraction_cost", "cache_verification", "bootstrap_cost"},
    "full": set(SECTIONS),
}
REPS = {"quick": 5, "default": 7, "full": 9}
"""Repetitions of every per-pair figure (at least 5: median and min–max mean something)."""
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "benchmark"


def _section(name: str, mode: str, workdir: Path):
    if name == "backbone_passes":
        from . import passes
        return passes.run(workdir / "passes")
    if name == "extraction_cost":
        from . import extraction
        return extraction.run(reps=4 if mode == "full" else 2, full=mode == "full")
    if name == "matching_cost":
        from . import matching
        return matching.run(reps=REPS[mode])
    if name == "smoke_tables":
        from . import smoke_tables
        return smoke_tables.run(workdir / "smoke_tables", reps=3 if mode == "quick" else 5)
    if name == "cache_bytes":
        from . import cache_size
        return cache_size.run()
    if name == "precision_parity":
        from sdfuse.tables.precision import precision_parity
        return precision_parity("smoke", "float32", "bfloat16", reference_cache=workdir / "parity" / "fp32",
                                candidate_cache=workdir / "parity" / "bf16")
    if name == "smoke_end_to_end":
        from . import e2e
        return e2e.run()
    if name == "cache_verification":
        from . import cache_verify
        return cache_verify.run(reps=5 if mode == "full" else 3)
    if name == "bootstrap_cost":
        from . import bootstrap_cost
        return bootstrap_cost.run(reps=5 if mode == "full" else 3)
    if name == "match_command":
        from . import match_command
        return match_command.run(workdir / "match", repeats=3 if mode == "full" else 2)
    raise ValueError(name)


def _get(sections: dict, name: str, *path, default=None):
    node = sections.get(name, {}).get("result")
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def summarize(sections: dict) -> list[dict]:
    """The headline rows: stable ids, value, unit, target (or null) and whether it is met."""
    rows = []

    def add(row_id, metric, section, value, unit, target=None, met=None, note="", spread=None):
        if value is None:
            return
        row = {"id": row_id, "metric": metric, "section": section, "value": value, "unit": unit,
               "target": target, "met": met, "status": sections.get(section, {}).get("status"), "note": note}
        if spread is not None:          # a repeated timing: its min–max, spread and the machine's load
            row |= {"min": spread["min"], "max": spread["max"], "spread": spread["spread"], "noisy": spread["noisy"],
                    "other_processes_cpu_fraction": spread.get("cpu", {}).get("other_processes_cpu_fraction")}
        rows.append(row)

    bp = "backbone_passes"
    ratio = _get(sections, bp, "unet_crop_pass_ratio")
    add("unet_crop_pass_ratio", "UNet crop passes, reference ÷ ours, whole supplement (real sizes, code-faithful "
        "reference schedule)", bp, ratio, "x", ">= 30", _get(sections, bp, "target_met"),
        "PF-Pascal and TSS images are used by ~1 pair each, so there is little to reuse there")
    ratio_b = _get(sections, bp, "unet_crop_pass_ratio_every_row_both")
    add("unet_crop_pass_ratio_every_row_both", "UNet crop passes, reference ÷ ours, whole supplement, every table "
        "row recomputing both backbones", bp, ratio_b, "x", ">= 30",
        None if ratio_b is None else ratio_b >= 30)
    per = _get(sections, bp, "paper_extrapolated", "code_faithful", "unet_crop_pass_ratio_per_dataset") or {}
    for dataset, value in per.items():
        add(f"unet_crop_pass_ratio_{dataset.split('-')[0].lower()}", f"UNet crop passes, reference ÷ ours, {dataset} "
            f"rows only (code-faithful)", bp, value, "x")
    add("unet_crop_pass_ratio_smoke_measured", "UNet crop passes, reference ÷ ours, measured on the smoke fixtures",
        bp, _get(sections, bp, "smoke", "measured_unet_crop_pass_ratio_code_faithful"), "x")
    decoder = _get(sections, bp, "vae_decoder_passes_ours")
    add("vae_decoder_passes", "VAE decoder passes while computing every table (smoke, hook counter)", bp, decoder,
        "passes", "== 0", None if decoder is None else decoder == 0)

    ex = "extraction_cost"
    add("extraction_ratio_fp32", "Per-image extraction time, ours fp32 ÷ reference fp32 (real architectures)", ex,
        _get(sections, ex, "ratio_ours_fp32_to_reference"), "x", "<= 0.6", _get(sections, ex, "target_met"))
    add("extraction_ratio_bf16", "Per-image extraction time, ours bf16 ÷ reference fp32", ex,
        _get(sections, ex, "ratio_ours_bf16_to_reference"), "x")
    for key, label in (("ours_fp32", "ours fp32"), ("ours_bf16", "ours bf16"), ("reference_fp32", "reference fp32")):
        add(f"per_image_{key}_s", f"Per-image extraction time, {label} (4 × one crop + DINOv2)", ex,
            _get(sections, ex, key, "per_image_s"), "s")
    for key, label in (("ours_fp32", "ours fp32"), ("ours_bf16", "ours bf16"), ("reference_fp32", "reference fp32")):
        add(f"peak_rss_{key}_gib", f"Peak RSS during extraction, {label} (process, sampled)", ex,
            _get(sections, ex, key, "peak_rss_gib"), "GiB")
    add("peak_rss_ours_fp32_960_gib", "Peak RSS of our real 960-px 4-crop SD pass, fp32", ex,
        _get(sections, ex, "ours_fp32", "sd_960_4crops_peak_rss_gib"), "GiB")

    if ratio is not None and _get(sections, ex, "reference_fp32", "sd_per_image_s") is not None:
        paper = _get(sections, bp, "paper_extrapolated")
        ref_t = (paper["code_faithful"]["total"]["sd_image_passes"] * _get(sections, ex, "reference_fp32", "sd_per_image_s")
                 + paper["code_faithful"]["total"]["dino_image_passes"] * _get(sections, ex, "reference_fp32", "dino_s"))
        ours_t = (paper["ours"]["total"]["sd_image_passes"] * _get(sections, ex, "ours_fp32", "sd_per_image_s")
                  + paper["ours"]["total"]["dino_image_passes"] * _get(sections, ex, "ours_fp32", "dino_s"))
        add("backbone_time_ratio_fp32", "Backbone CPU time for the whole supplement, reference ÷ ours fp32 "
            "(passes × measured per-image cost)", "extraction_cost", round(ref_t / ours_t, 1), "x",
            note=f"reference ≈ {ref_t / 3600:.0f} h, ours ≈ {ours_t / 3600:.1f} h on this CPU")

    mc = "matching_cost"
    timing = _get(sections, mc, "timings_s") or {}
    share = {name: t.get("cpu", {}) for name, t in timing.items()}
    fuse_round = _get(sections, mc, "ratio_ours_to_reference_per_round")
    table1_round = _get(sections, mc, "table1_ratio_ours_to_reference_per_round")
    add("table1_ratio_to_reference", "Per pair, Table 1's 14 methods: ours ÷ reference (14 runs: 7 × Fuse + 7 × SD, "
        "each pca_lowrank + the full 3600-row loop), median of interleaved rounds", mc,
        None if table1_round is None else table1_round["median"], "x", "<= 0.03", _get(sections, mc, "target_met"),
        spread=None if table1_round is None else {**table1_round, "cpu": share.get("ours_table1", {})})
    add("matching_ratio_to_reference", "Per pair, one Fuse method: ours ÷ reference (pca_lowrank + the full "
        "3600-row −L2 loop), median of interleaved rounds", mc, None if fuse_round is None else fuse_round["median"],
        "x", spread=None if fuse_round is None else {**fuse_round, "cpu": share.get("ours_fuse", {})})
    for row_id, key, metric in (
            ("table1_per_pair_s", "ours_table1", "Per pair, Table 1's 14 methods, ours: co-PCA + similarities + records (G=60, CPU)"),
            ("matching_per_pair_s", "ours_fuse", "Per pair, one Fuse method, ours: co-PCA + assembly + fusion + NN + records (G=60, CPU)"),
            ("reference_per_pair_s", "reference_fuse", "Per pair, one Fuse run, reference: pca_lowrank + full 3600-row −L2 loop"),
            ("reference_sd_per_pair_s", "reference_sd", "Per pair, one SD run, reference: pca_lowrank + full 3600-row cosine loop")):
        add(row_id, metric, mc, timing.get(key, {}).get("median"), "s", spread=timing.get(key))
    add("table1_ratio_to_floor", "Per pair, Table 1's 14 methods, ours ÷ floor (the co-PCA Gram products' flops at "
        "this run's sgemm rate)", mc, _get(sections, mc, "table1_ratio_ours_to_floor"), "x")
    add("matching_ratio_to_floor", "Per pair, one Fuse method, ours ÷ floor", mc, _get(sections, mc, "ratio_ours_to_floor"), "x")

    st = "smoke_tables"
    total = _get(sections, st, "total_s")
    add("smoke_tables_s", "Whole smoke supplement's evaluation (every table function, warm cache, no kernel start-up)",
        st, None if total is None else total["median"], "s", spread=total)

    cb = "cache_bytes"
    add("cache_mb_per_image_fp32", "Cache per image at G=60, SD + DINOv2 blocks 9, 11, float32 (as stored)", cb,
        _get(sections, cb, "per_image_fp32_mb"), "MB")
    add("cache_mb_per_image_fp16", "Cache per image at G=60, SD + DINOv2 blocks 9, 11, if stored float16", cb,
        _get(sections, cb, "per_image_fp16_mb"), "MB")
    add("cache_mb_sd_fp32", "Cache per image, SD layers 2/5/8 only, float32", cb,
        _get(sections, cb, "sd", "fp32_mb_written"), "MB")

    pp = "precision_parity"
    nn = _get(sections, pp, "min_identical_nn_fraction")
    add("bf16_identical_nn_fraction", "bf16 vs fp32 extraction (smoke, Table 1 default SD and Fuse): identical NN",
        pp, nn, "fraction", ">= 0.99", None if nn is None else nn >= 0.99)
    delta = _get(sections, pp, "max_abs_pck_delta")
    add("bf16_max_abs_pck_delta", "bf16 vs fp32 extraction (smoke): largest |ΔPCK|", pp, delta, "PCK points",
        "<= 0.2", None if delta is None else delta <= 0.2)

    cv = "cache_verification"
    add("cache_verify_overhead_fraction", "Cache-entry verification on read (digests, shapes, finiteness) ÷ the rest of "
        "a warm pair at G=60, all 4 entries (≈ 37 MB per image) read from disk", cv,
        _get(sections, cv, "overhead_fraction"), "fraction", "<= 0.05", _get(sections, cv, "target_met"))

    bc = "bootstrap_cost"
    for scope, label in (("sample_20_per_category", "the supplement's 20 pairs per category"),
                         ("all_test_pairs", "all 12,234 SPair-71k test pairs")):
        add(f"bootstrap_s_per_table_{scope}", f"Bootstrap intervals (1,000 resamples) per 14-row table, {label}", bc,
            _get(sections, bc, scope, "bootstrap_s_per_table"), "s")

    e2 = "smoke_end_to_end"
    add("smoke_reproduce_cold_s", "sdfuse reproduce --profile smoke, cold (builds assets, extracts)", e2,
        _get(sections, e2, "cold", "wall_s"), "s")
    add("smoke_reproduce_warm_s", "sdfuse reproduce --profile smoke, warm", e2, _get(sections, e2, "warm", "wall_s"), "s")
    gpu = "gpu"
    device = _get(sections, gpu, "device_name") or "GPU"
    grid = _get(sections, gpu, "grid")
    for dtype in ("float32", "float16", "bfloat16"):
        add(f"gpu_per_image_{dtype}_s", f"per image on {device}, {dtype} (SD 4 crops + DINOv2, G = {grid})", gpu,
            _get(sections, gpu, "extraction", dtype, "seconds_per_image_median"), "s")
        add(f"gpu_peak_memory_{dtype}_gib", f"peak GPU memory allocated, {dtype}", gpu,
            _get(sections, gpu, "extraction", dtype, "peak_memory_allocated_gib"), "GiB")
    for dtype in ("float16", "bfloat16"):
        nn = _get(sections, gpu, "parity_vs_float32", dtype, "identical_nn_fraction")
        if nn:
            add(f"gpu_{dtype}_identical_nn_fraction", f"{dtype} vs float32 on {device}: identical nearest neighbours "
                "(worst of SD, Fuse)", gpu, min(nn.values()), "fraction", ">= 0.99", min(nn.values()) >= 0.99)
    add("gpu_table1_per_pair_s", f"Table 1's 14 methods per pair on {device}", gpu,
        _get(sections, gpu, "table1_per_pair_s"), "s")
    rh = "rehearsal"
    add("rehearsal_wall_s", "make rehearse: every table and notebook at the paper's settings, real-size random models",
        rh, _get(sections, rh, "wall_s"), "s")
    add("rehearsal_seconds_per_image", "rehearsal: SD (4 crops of 512 px) + DINOv2 (840 px) per image, fp32", rh,
        _get(sections, rh, "seconds_per_image"), "s")
    add("rehearsal_peak_rss_gib", "rehearsal: peak RSS (the benchmark process or a notebook kernel)", rh,
        _get(sections, rh, "peak_rss_gib"), "GiB")
    add("gpu_supplement_projection_fp32_min", f"whole supplement projected on {device}, float32", gpu,
        _get(sections, gpu, "supplement_projection_min", "float32"), "min")

    mc2, profile = "match_command", _get(sections, "match_command", "profile")
    add("match_first_s", f"sdfuse match at G=60 on the CPU, first call (extracts both images), {profile} profile",
        mc2, _get(sections, mc2, "first", "wall_s"), "s", note=_get(sections, mc2, "note", default=""))
    add("match_repeated_s", f"sdfuse match at G=60 on the CPU, repeated (features cached), {profile} profile", mc2,
        _get(sections, mc2, "repeated", "wall_s"), "s")
    return rows


def _sections(text: str) -> set[str]:
    selected = {name.strip() for name in text.split(",")}
    unknown = selected - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return selected


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (also used by the documentation test)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="skip the real-size model forwards")
    group.add_argument("--full", action="store_true", help="more repetitions, the 960-px pass and the end-to-end run")
    parser.add_argument("--only", type=_sections, help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: results/benchmark)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch and BLAS threads for every timing (default: the logical cores)")
    parser.add_argument("--malloc", choices=("fixed", "adaptive"), default="fixed",
                        help="glibc malloc thresholds: fixed for the run (default; steady timings) or glibc's "
                             "adaptive default")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    pin_threads(args.threads)
    pin_allocator(args.malloc)
    mode = "quick" if args.quick else "full" if args.full else "default"
    selected = MODES[mode]
    if args.only:
        selected = args.only
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "benchmark.json"
    previous = {}
    if json_path.is_file():
        try:
            previous = json.loads(json_path.read_text()).get("sections", {})
        except (json.JSONDecodeError, AttributeError):
            previous = {}

    started = time.perf_counter()
    load_start = os.getloadavg()
    sections = {}
    with tempfile.TemporaryDirectory(prefix="sdfuse-bench-") as tmp:
        home = Path(tmp) / "home"
        os.environ["SDFUSE_HOME"] = str(home)       # smoke assets and caches built fresh for this run
        for name in SECTIONS:
            if name not in selected:
                old = previous.get(name)
                if old and old.get("status") in ("measured", "carried_over", "partial"):
                    sections[name] = {**old, "status": "partial" if old["status"] == "partial" else "carried_over"}
                else:
                    sections[name] = {"status": "skipped", "note": f"not run in {mode} mode; use --full or --only {name}"}
                continue
            print(f"[benchmark] {name} ...", flush=True)
            entry = {"status": "measured", "measured_at": now_utc(), "mode": mode}
            try:
                with CpuShare() as cpu:
                    entry["result"] = _section(name, mode, Path(tmp))
                entry["cpu"] = cpu.as_dict()
                print(f"[benchmark] {name} done in {cpu.wall_s:.0f} s", flush=True)
            except Exception as error:  # noqa: BLE001 - one failing section must not lose the others
                entry.update(status="failed", error=f"{type(error).__name__}: {error}",
                             traceback=traceback.format_exc()[-3000:])
                print(f"[benchmark] {name} FAILED: {error}", file=sys.stderr, flush=True)
            sections[name] = entry

    report = {
        "schema": SCHEMA,
        "generated_at": now_utc(),
        "mode": mode,
        "command": "python -m benchmarks.run" + {"quick": " --quick", "full": " --full", "default": ""}[mode]
                   + (f" --only {args.only}" if args.only else "") + f" --threads {args.threads} --malloc {args.malloc}",
        "machine": {**machine(), "load_average_1m_at_start": round(load_start[0], 2),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "threads": thread_settings(),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "process_peak_rss_gib": round(process_peak_rss_gib(), 3),
        "summary": summarize(sections),
        "sections": sections,
    }
    json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    from .markdown import render

    (args.out / "benchmark.md").write_text(render(report))
    print(f"[benchmark] wrote {json_path} and benchmark.md in {report['wall_time_s']:.0f} s")
    return 1 if any(s.get("status") == "failed" for s in sections.values()) else 0


def write_section(out: Path, name: str, result: dict, mode: str, cpu: CpuShare, status: str = "measured") -> Path:
    """Add (or replace) one measured section of ``out/benchmark.json``, keeping the others; the summary
    and ``benchmark.md`` are rebuilt. Used by the benchmarks that run on their own (``benchmarks.gpu``,
    ``benchmarks.rehearsal``); ``cpu`` is the section's :class:`~benchmarks.common.CpuShare`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmark.json"
    load = round(os.getloadavg()[0], 2)
    report = json.loads(path.read_text()) if path.is_file() else {
        "schema": SCHEMA, "mode": mode, "command": f"python -m benchmarks.{name}",
        "machine": {**machine(), "load_average_1m_at_start": load, "load_average_1m_at_end": load},
        "wall_time_s": cpu.wall_s, "process_peak_rss_gib": round(process_peak_rss_gib(), 3), "sections": {}}
    report["sections"][name] = {"status": status, "measured_at": now_utc(), "mode": mode, "result": result,
                                "cpu": cpu.as_dict()}
    report["generated_at"] = now_utc()
    report["summary"] = summarize(report["sections"])
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    from .markdown import render

    (out / "benchmark.md").write_text(render(report))
    return path


if __name__ == "__main__":
    sys.exit(main())
