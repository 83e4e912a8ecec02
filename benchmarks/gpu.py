"""The prepared GPU check: the paper path's cost and precision on one CUDA GPU, in one short run.

    python -m benchmarks.gpu                       # on a CUDA machine: real sizes, G = 60, ~4-6 min
    python -m benchmarks.gpu --device cpu --quick  # the dry run the test suite makes (tiny models, seconds)

It needs torch, diffusers, timm and transformers, and nothing else of the book's stack: no papermill,
no jupyter, no network, no weights. It builds SD v1.5 (UNet, VAE, CLIP ViT-L/14 text encoder) and
DINOv2 ViT-B/14 at their real sizes with seeded random weights in memory (the rehearsal profile's
architectures, :mod:`sdfuse.profiles.assets`), writes synthetic real-size images (:mod:`sdfuse.data.datasets.synthetic`,
long side 504 px) and extracts every image at G = 60 in float32, float16 and bfloat16 through the
library's extractors. It records, per dtype: seconds per image (median of the warm runs, synchronised),
peak ``torch.cuda.max_memory_allocated``; float16/bfloat16 against float32: identical nearest
neighbours and ΔPCK on Table 1's default rows (PROTOCOL §14 "Precision"); the per-pair matching time
of Table 1's 14 methods on the device; and the whole supplement's projected time from the unique-image
and pair counts of :data:`benchmarks.passes.PAPER_SIZES`. The result is the ``gpu`` section of
``benchmark.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

DTYPES = ("float32", "float16", "bfloat16")
QUICK = {"images_per_category": 2, "categories": ("present",), "grid": 12, "crop": 128, "profile": "smoke",
         "scale": 1.0, "reps": 1}
REAL = {"images_per_category": 11, "categories": None, "grid": 60, "crop": 512, "profile": "rehearsal",
        "scale": None, "reps": 3}
"""Real mode: 3 categories × 11 = 33 images at G = 60; quick mode: the smoke architectures, 2 images."""
TABLE1_METHODS = 14
METHODS_PER_PAIR = {"SPair-71k": 14 + 6 + 6 + 11 + 4 + 3, "PF-Pascal": 4, "CUB-200": 4}
"""Methods evaluated per pair by the supplement's tables (Tables 1, 2, 3, α sweep, 5, 6; 5; 8)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny models, G = 12, 6 images: the dry run")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of benchmark.json to add the gpu section to (default: the benchmark's)")
    return parser


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_models(spec):
    """SD (UNet, VAE encoder, empty-prompt embedding) and DINOv2 of ``spec``'s sizes: seeded, float32, CPU."""
    import timm
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdfuse.profiles.assets import clip_tokenizer
    from sdfuse.features.architectures import SD15_SCHEDULER
    from sdfuse.features.sd import SDModels, empty_prompt_embedding

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**spec.unet).eval()
    vae = AutoencoderKL(**spec.vae).eval()
    vae.decoder = None                                            # never run (PROTOCOL §2.3g)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_tokenizer(Path(tmp), *spec.prompt_token_ids)
    empty = empty_prompt_embedding(tokenizer, CLIPTextModel(CLIPTextConfig(**spec.text_encoder)).eval())
    alpha_bar = float(DDPMScheduler(**SD15_SCHEDULER).alphas_cumprod[100])
    dino = timm.create_model("vit_base_patch14_dinov2", pretrained=False, dynamic_img_size=True, num_classes=0,
                             **spec.dino).eval()
    return SDModels(unet=unet, vae=vae, alpha_bar=alpha_bar, empty_prompt=empty), dino


def extract_all(images: list[Path], setting: dict, device: torch.device, dtype: str, models) -> dict:
    """Features of every image in ``dtype`` (copies of the float32 ``models`` on ``device``), with the
    median seconds per warm image and the peak device memory."""
    import copy

    from PIL import Image

    from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor
    from sdfuse.features.sd import DTYPES as TORCH_DTYPES
    from sdfuse.features.sd import SDConfig, SDFeatureExtractor

    sd_models, dino_model = copy.deepcopy(models)
    cast = TORCH_DTYPES[dtype]
    sd_models.unet, sd_models.vae = sd_models.unet.to(device, cast), sd_models.vae.to(device, cast)
    sd = SDFeatureExtractor(SDConfig(model="random-init", grid=setting["grid"], crop=setting["crop"], dtype=dtype,
                                     device=str(device)), sd_models)
    dino = DinoFeatureExtractor(DinoConfig(model="random-init", grid=setting["grid"], blocks=(9, 11), dtype=dtype,
                                           device=str(device)), dino_model.to(device, cast))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    features, seconds = {}, []
    for index, path in enumerate(images):
        with Image.open(path) as image:
            image.load()
            _sync(device)
            start = time.perf_counter()
            features[path] = (sd.extract(image), dino.extract(image))
            _sync(device)
        if index > 0 or len(images) == 1:                          # the first image warms the kernels up
            seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del sd, dino, sd_models, dino_model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"features": features, "seconds_per_image": statistics.median(seconds), "runs_s": seconds,
            "peak_memory_allocated_gib": peak}


def _on(device: torch.device, features: dict, part: int) -> dict:
    return {path: {k: v.to(device) for k, v in maps[part].items()} for path, maps in features.items()}


def run(device_name: str = "cuda", quick: bool = False) -> dict:
    """The whole check; returns the ``gpu`` section's result."""
    from benchmarks.passes import PAPER_SIZES
    from sdfuse.profiles.assets import ASSETS
    from sdfuse.data.datasets import load_spair
    from sdfuse.data.datasets.synthetic import REAL_SIZE_SCALE, make_spair_like
    from sdfuse.evaluation.pair_features import Method
    from sdfuse.evaluation.keypoints import evaluate
    from sdfuse.tables.paper import TABLE1_SUBSETS
    from sdfuse.tables.precision import compare_records, table1_default_methods

    setting = QUICK if quick else REAL
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU is visible; run with --device cpu --quick for the dry run")
    spec = ASSETS[setting["profile"]]
    with tempfile.TemporaryDirectory(prefix="sdfuse-gpu-") as tmp:
        root = make_spair_like(Path(tmp) / "SPair-71k", images_per_category=setting["images_per_category"],
                               scale=setting["scale"] or REAL_SIZE_SCALE, categories=setting["categories"])
        pairs = load_spair(root, pairs_per_category=setting["images_per_category"] * 2, seed=42)
        images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
        per_dtype, records = {}, {}
        pca = 256 if not quick else 16
        models = build_models(spec)
        for dtype in DTYPES:
            done = extract_all(images, setting, device, dtype, models)
            sd_cpu = {path: maps[0] for path, maps in done["features"].items()}
            dino_cpu = {path: maps[1] for path, maps in done["features"].items()}
            records[dtype] = evaluate(pairs, table1_default_methods(pca), setting["grid"], sd_cpu, dino_cpu,
                                      progress=False)
            per_dtype[dtype] = {"seconds_per_image_median": round(done["seconds_per_image"], 4),
                                "warm_runs_s": [round(t, 4) for t in done["runs_s"]],
                                "peak_memory_allocated_gib": None if done["peak_memory_allocated_gib"] is None
                                else round(done["peak_memory_allocated_gib"], 3)}
            if dtype == "float32":
                reference = done["features"]
        parity = {dtype: compare_records(records["float32"], records[dtype]) for dtype in DTYPES[1:]}
        methods = {f"{kind} {'+'.join(map(str, s))}": Method(kind, sd_layers=s, pca_dim=pca)
                   for s in TABLE1_SUBSETS for kind in ("SD", "Fuse")}
        sd_dev, dino_dev = _on(device, reference, 0), _on(device, reference, 1)
        timings = []
        for _ in range(setting["reps"] + 1):
            _sync(device)
            start = time.perf_counter()
            evaluate(pairs, methods, setting["grid"], sd_dev, dino_dev, progress=False)
            _sync(device)
            timings.append((time.perf_counter() - start) / len(pairs))
    per_pair = statistics.median(timings[1:])
    fp32 = per_dtype["float32"]["seconds_per_image_median"]
    unique = sum(size["unique_images"] for size in PAPER_SIZES.values())
    pair_methods = sum(PAPER_SIZES[d]["pairs"] * m for d, m in METHODS_PER_PAIR.items())
    projection = {dtype: round((unique * per_dtype[dtype]["seconds_per_image_median"]
                                + pair_methods / TABLE1_METHODS * per_pair) / 60, 1) for dtype in DTYPES}
    return {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "quick": quick, "grid": setting["grid"], "images": len(images),
        "pairs": len(pairs), "extraction": per_dtype,
        "parity_vs_float32": {dtype: {"identical_nn_fraction": {m: round(v["identical_nn_fraction"], 4)
                                                                for m, v in result.items()},
                                      "max_abs_pck_delta": {m: round(v["max_abs_pck_delta"], 3) for m, v in result.items()}}
                              for dtype, result in parity.items()},
        "table1_per_pair_s": round(per_pair, 4), "table1_per_pair_runs_s": [round(t, 4) for t in timings[1:]],
        "supplement_projection_min": projection,
        "projection_basis": f"{unique} unique images (benchmarks.passes.PAPER_SIZES) × seconds per image + "
                            f"{pair_methods} pair-method evaluations × Table 1's per-pair time / {TABLE1_METHODS}; "
                            f"TSS's dense matching is counted like a keypoint pair (an approximation)",
        "float32_seconds_per_image": fp32,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import diffusers

    diffusers.logging.set_verbosity_error()                         # the cast-to-dtype advisories
    from benchmarks.common import CpuShare
    from benchmarks.run import DEFAULT_OUT, write_section

    with CpuShare() as cpu:
        result = run(args.device, quick=args.quick)
    path = write_section(args.out or DEFAULT_OUT, "gpu", result, mode="quick" if args.quick else "gpu", cpu=cpu)
    print(f"[gpu] {result['device_name']}: {result['float32_seconds_per_image']:.2f} s/image fp32, "
          f"Table 1 per pair {result['table1_per_pair_s']:.3f} s; wrote the gpu section of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
