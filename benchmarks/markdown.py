"""``benchmark.md``: the summary table and the main breakdowns of ``benchmark.json``."""
from __future__ import annotations


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _met(row: dict) -> str:
    if row["met"] is None:
        return ""
    return "✅ met" if row["met"] else "❌ missed"


def render(report: dict) -> str:
    m = report["machine"]
    threads = report.get("threads", {})
    lines = [
        "# sdfuse benchmark",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` ({report['mode']} mode) in "
        f"{report['wall_time_s']:.0f} s on {m['cpu']} ({m['logical_cores']} cores, {m['torch_threads']} torch threads, "
        f"{m['memory_gib']} GiB, GPU: {'yes' if m['gpu'] else 'no'}; torch {m['torch']}; threads pinned: "
        f"torch {threads.get('torch_intra_op', m['torch_threads'])}, BLAS pools "
        f"{[pool.get('num_threads') for pool in threads.get('blas_pools', [])] or 'not inspected'}). "
        f"Load average {m['load_average_1m_at_start']} → {m['load_average_1m_at_end']}: other work on the machine "
        f"slows every timing; each section records the CPU share other processes took (`cpu.other_processes_cpu_fraction`).",
        "",
        "A repeated timing shows its median, min–max and spread = (max − min) ÷ median; above 20 % it is marked "
        "noisy, and the other processes' CPU share while it ran says why.",
        "",
        "| Metric | Value | Min–max (spread; others' CPU) | Unit | Target | Result | Section |",
        "|---|---:|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        status = "" if row["status"] == "measured" else f" ({row['status']})"
        spread = ""
        if "spread" in row:
            spread = (f"{_fmt(row['min'])}–{_fmt(row['max'])} ({row['spread']:.0%}{', noisy' if row['noisy'] else ''}; "
                      f"{_fmt(row['other_processes_cpu_fraction'])})")
        lines.append(f"| {row['metric']} | {_fmt(row['value'])} | {spread} | {row['unit']} | {row['target'] or ''} | "
                     f"{_met(row)} | {row['section']}{status} |")
    sections = report["sections"]
    lines += ["", "## Sections", "", "| Section | Status | Measured at | Wall s | Other processes' CPU share |",
              "|---|---|---|---:|---:|"]
    for name, entry in sections.items():
        cpu = entry.get("cpu", {})
        lines.append(f"| {name} | {entry['status']} | {entry.get('measured_at', '')} | {_fmt(cpu.get('wall_s'))} | "
                     f"{_fmt(cpu.get('other_processes_cpu_fraction'))} |")
        if entry.get("error"):
            lines.append(f"| | error: {entry['error'][:200]} | | | |")

    passes = sections.get("backbone_passes", {}).get("result")
    if passes:
        paper = passes["paper_extrapolated"]
        lines += ["", "## Backbone passes (real dataset sizes)", "",
                  "| Dataset | Pairs | Unique images (ours) | Reference SD image passes (code-faithful / every row) | "
                  "Ours | UNet crop ratio (code-faithful / every row) |", "|---|---:|---:|---:|---:|---:|"]
        for dataset, size in passes["paper_sizes"].items():
            cf = paper["code_faithful"]["per_dataset"][dataset]
            er = paper["every_row_both"]["per_dataset"][dataset]
            ours = paper["ours"]["per_dataset"][dataset]
            lines.append(f"| {dataset} | {size['pairs']:,} | {size['unique_images']:,} | {cf['sd_image_passes']:,} / "
                         f"{er['sd_image_passes']:,} | {ours['sd_image_passes']:,} | "
                         f"{paper['code_faithful']['unet_crop_pass_ratio_per_dataset'][dataset]} / "
                         f"{paper['every_row_both']['unet_crop_pass_ratio_per_dataset'][dataset]} |")
        cf, er, ours = paper["code_faithful"]["total"], paper["every_row_both"]["total"], paper["ours"]["total"]
        lines.append(f"| **all** | | {ours['sd_image_passes']:,} | {cf['sd_image_passes']:,} / {er['sd_image_passes']:,} | "
                     f"{ours['sd_image_passes']:,} | {paper['code_faithful']['unet_crop_pass_ratio']} / "
                     f"{paper['every_row_both']['unet_crop_pass_ratio']} |")
        lines += ["", "Per image the reference runs 4 crops × (CLIP ViT-L/14-336, VAE encoder, full UNet, full VAE "
                  "decoder); ours 4 crops × (VAE encoder, UNet up to layer 8) and no decoder. Assumptions:", ""]
        lines += [f"- {dataset}: {size['note']}" for dataset, size in passes["paper_sizes"].items()]
        smoke = passes["smoke"]["measured"]
        lines += ["", f"Measured on the smoke fixtures (all tables from an empty cache): {smoke['sd_extractions']} SD "
                  f"and {smoke['dino_extractions']} DINOv2 extractions, {smoke['unet_crop_passes']} UNet crop passes, "
                  f"{smoke['vae_decoder_calls']} VAE decoder calls, {smoke['unet_up_blocks_3_calls']} calls of "
                  f"`up_blocks[3]` (early stop)."]

    extraction = sections.get("extraction_cost", {}).get("result")
    if extraction:
        ref = extraction["reference_fp32"]
        lines += ["", "## Per-image extraction (real architectures, random weights)", "", extraction["method"] + ".", "",
                  "| | SD one crop s | SD per image s | DINOv2 s | Per image s | Peak RSS GiB |", "|---|---:|---:|---:|---:|---:|"]
        for key in ("ours_fp32", "ours_bf16", "reference_fp32"):
            row = extraction[key]
            lines.append(f"| {key} | {_fmt(row['sd_one_crop_s'])} | {_fmt(row['sd_per_image_s'])} | {_fmt(row['dino_s'])} | "
                         f"{_fmt(row['per_image_s'])} | {_fmt(row['peak_rss_gib'])} |")
        parts = ", ".join(f"{name} {_fmt(p['best_s'])} s" for name, p in ref["per_crop_components"].items())
        lines += ["", f"Reference per crop: {parts}."]

    matching = sections.get("matching_cost", {}).get("result")
    if matching:
        lines += ["", "## Per-pair matching (G = 60, CPU)", "", matching["method"] + ".", "",
                  "| Figure | Median s | Min s | Max s | Spread | Other processes' CPU share |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, t in matching["timings_s"].items():
            flag = " (noisy)" if t["noisy"] else ""
            lines.append(f"| {name} | {_fmt(t['median'])} | {_fmt(t['min'])} | {_fmt(t['max'])} | "
                         f"{t['spread']:.0%}{flag} | {_fmt(t['cpu']['other_processes_cpu_fraction'])} |")
        for key, label in (("table1_ratio_ours_to_reference_per_round", "Table 1's 14 methods, ours ÷ reference"),
                           ("ratio_ours_to_reference_per_round", "one Fuse method, ours ÷ reference")):
            r = matching[key]
            lines.append(f"| {label} (per round) | {_fmt(r['median'])} | {_fmt(r['min'])} | {_fmt(r['max'])} | "
                         f"{r['spread']:.0%}{' (noisy)' if r['noisy'] else ''} | |")
        gram = matching["gram"]
        lines += ["", f"Floor: the co-PCA Gram products, {gram['symmetric_flops'] / 1e9:.2f} GFLOP as symmetric products "
                  f"({gram['gemm_flops'] / 1e9:.2f} as plain GEMMs), at this run's best sgemm rate "
                  f"{gram['gemm_gflops_per_s']} GFLOP/s = {_fmt(gram['floor_s'])} s; ours ÷ floor "
                  f"{_fmt(matching['table1_ratio_ours_to_floor'])} (Table 1's 14 methods), "
                  f"{_fmt(matching['ratio_ours_to_floor'])} (one Fuse method). Where Table 1's pair goes: "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in matching["stage_profile_table1"].items()) + "."]
    smoke = sections.get("smoke_tables", {}).get("result")
    if smoke:
        total = smoke["total_s"]
        lines += ["", "## Smoke supplement, evaluation only (warm cache)", "", smoke["method"] + ".", "",
                  f"Total {_fmt(total['median'])} s (min {_fmt(total['min'])}, max {_fmt(total['max'])}, spread "
                  f"{total['spread']:.0%}{', noisy' if total['noisy'] else ''}; other processes' CPU share "
                  f"{_fmt(total['cpu']['other_processes_cpu_fraction'])}); first pass with extraction "
                  f"{_fmt(smoke['cold_first_pass_s'])} s. Per table (median s): "
                  + ", ".join(f"{k} {_fmt(v['median'])}" for k, v in smoke["per_table_s"].items()) + "."]
    return "\n".join(lines) + "\n"
