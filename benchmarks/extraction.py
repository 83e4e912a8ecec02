"""Per-image extraction cost of the real architectures (random weights) against the reference's work.

Ours: SD v1.5's UNet + VAE encoder built from :data:`SD15_UNET`/:data:`SD15_VAE`, run through
:meth:`SDFeatureExtractor.extract_pixels` (VAE posterior mean, shared noise at t = 100, empty-prompt
conditioning, UNet stopped after layer 8's block, no VAE decoder), and DINOv2 ViT-B/14 at 840 px
through :meth:`DinoFeatureExtractor.extract_pixels` (blocks 9 and 11, as the paper profile caches).

Reference (PROTOCOL §2.3, §14, re-enacted with the same modules): per 512-px crop a CLIP
ViT-L/14-336 image forward (the implicit captioner's input), the VAE encoder, the *full* UNet and
a *full* VAE decode of the latent; DINOv2 ViT-B/14 at 840 px through all blocks and the final norm.
The captioner's two small linear maps (768→768, 768→1280) are included.

These forwards are slow on a laptop-class CPU, so each component runs on ONE 512-px crop and is
multiplied by the protocol's 4 crops per 960-px image (stated in the output as ``crops_factor``).
``full=True`` also runs our real 960-px 4-crop ``extract_pixels`` once to check that extrapolation.
"""
from __future__ import annotations

import gc
import math
import time

import psutil

import torch
import torch.nn.functional as F

from .common import GIB, PeakRSS

CROPS = 4
CROP = 512
CLIP_SIZE = 336
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_L14_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
"""CLIP ViT-L/14-336's vision tower (openai/clip-vit-large-patch14-336 config.json values)."""


def _round(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _build_sd():
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from sdfuse.features.architectures import SD15_SCHEDULER, SD15_UNET, SD15_VAE

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    vae = AutoencoderKL(**SD15_VAE).eval()
    alpha_bar = float(DDPMScheduler(**SD15_SCHEDULER).alphas_cumprod[100])
    return unet, vae, alpha_bar


def _build_dino():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_base_patch14_dinov2", pretrained=False, dynamic_img_size=True,
                             num_classes=0).eval()


def _param_gib(*modules) -> float:
    return sum(p.numel() * p.element_size() for m in modules if m is not None for p in m.parameters()) / 1024 ** 3


class _Step:
    """One timed forward: its runs and the largest RSS rise above the level at its start (activations)."""

    def __init__(self, name: str, fn):
        self.name, self.fn, self.runs, self.activation_peak = name, fn, [], 0

    def __call__(self) -> None:
        with PeakRSS(interval=0.005) as mem:
            start = time.perf_counter()
            self.fn()
            self.runs.append(time.perf_counter() - start)
        self.activation_peak = max(self.activation_peak, mem.peak - mem.baseline)

    def as_dict(self) -> dict:
        return {"best_s": _round(min(self.runs)), "runs_s": [_round(t) for t in self.runs],
                "activation_peak_gib": round(self.activation_peak / GIB, 3)}


def _sd_extractor(unet, vae, alpha_bar: float, dtype: str):
    from sdfuse.features.sd import SDConfig, SDFeatureExtractor, SDModels

    models = SDModels(unet=unet, vae=vae, alpha_bar=alpha_bar, empty_prompt=torch.zeros(1, 77, 768))
    return SDFeatureExtractor(SDConfig(model="random-init SD v1.5", grid=60, crop=CROP, dtype=dtype), models)


def _dino_extractor(model, dtype: str):
    from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor

    return DinoFeatureExtractor(DinoConfig(model="random-init DINOv2 ViT-B/14", grid=60, blocks=(9, 11), dtype=dtype),
                                model=model)


def _reference_steps(unet, vae, decoder, clip, dino, alpha_bar: float, crop, dino_in) -> list[_Step]:
    """The reference's per-crop forwards (CLIP, VAE encoder, full UNet, full VAE decoder) and its DINOv2 pass."""
    from sdfuse.features.sd import LATENT_SCALE, shared_noise

    caption = torch.nn.Linear(768, 768)
    time_proj = torch.nn.Linear(768, 1280)
    empty = torch.zeros(1, 77, 768)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    state: dict = {}

    @torch.no_grad()
    def clip_step():
        x = F.interpolate(crop, size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=False)
        embed = clip(pixel_values=(x - mean) / std).image_embeds
        state["cond"] = empty + caption(embed)[:, None]
        state["offset"] = time_proj(embed)

    @torch.no_grad()
    def encode_step():
        state["latent"] = vae.encode((crop - 0.5) / 0.5).latent_dist.mean * LATENT_SCALE

    @torch.no_grad()
    def unet_step():
        noisy = math.sqrt(alpha_bar) * state["latent"] + math.sqrt(1 - alpha_bar) * shared_noise(64, 42)
        hook = unet.time_embedding.register_forward_hook(lambda mod, inp, out: out + state["offset"])
        try:
            unet(noisy, torch.tensor([100]), encoder_hidden_states=state["cond"])
        finally:
            hook.remove()

    @torch.no_grad()
    def decode_step():                      # = vae.decode(z): post_quant_conv, then the full decoder
        decoder(vae.post_quant_conv(state["latent"] / LATENT_SCALE))

    @torch.no_grad()
    def dino_step():                        # the hub model's forward: all 12 blocks and the final norm
        dino.forward_features(dino_in)

    return [_Step("clip_vit_l14_336", clip_step), _Step("vae_encoder", encode_step),
            _Step("unet_full", unet_step), _Step("vae_decoder", decode_step), _Step("dinov2_full", dino_step)]


def run(reps: int = 2, full: bool = False) -> dict:
    """Build the real-size models once (fp32 and bf16 copies) and time ours and the reference interleaved.

    Every repetition runs ours fp32, ours bf16 and each reference component once, in turn (the order
    rotated from one repetition to the next), so that other work on a shared machine slows both sides
    alike; the best run of each is kept. Peak
    memory of a configuration = the process RSS before any model was built + the parameters that
    configuration holds + the largest activation rise measured during its forwards.
    """
    import copy

    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sdfuse.features.architectures import SD15_VAE

    gc.collect()
    base_rss = psutil.Process().memory_info().rss
    build = {}
    start = time.perf_counter()
    unet, vae, alpha_bar = _build_sd()
    decoder = vae.decoder
    vae.decoder = None                      # ours never runs it (load_sd_models drops it too)
    dino = _build_dino()
    build["ours_fp32_s"] = _round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_L14_336)).eval()
    build["reference_clip_s"] = _round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    unet16, vae16, dino16 = (copy.deepcopy(m).to(torch.bfloat16) for m in (unet, vae, dino))
    build["bf16_copies_s"] = _round(time.perf_counter() - start, 2)
    gc.collect()

    gen = torch.Generator().manual_seed(0)
    crop = torch.rand(1, 3, CROP, CROP, generator=gen)
    dino_in = torch.randn(1, 3, 840, 840, generator=gen)
    sd32, sd16 = _sd_extractor(unet, vae, alpha_bar, "float32"), _sd_extractor(unet16, vae16, alpha_bar, "bfloat16")
    dn32, dn16 = _dino_extractor(dino, "float32"), _dino_extractor(dino16, "bfloat16")
    sd32.extract_pixels(crop[:, :, :64, :64])   # a tiny pass through the whole code path (hooks, early stop)
    last: dict = {}
    ours = {"fp32": [_Step("sd_one_crop", lambda: last.update(sd32.extract_pixels(crop))),
                     _Step("dino", lambda: dn32.extract_pixels(dino_in))],
            "bf16": [_Step("sd_one_crop", lambda: sd16.extract_pixels(crop)), _Step("dino", lambda: dn16.extract_pixels(dino_in))]}
    reference = _reference_steps(unet, vae, decoder, clip, dino, alpha_bar, crop, dino_in)
    def reference_chain() -> None:          # CLIP → encoder → UNet → decoder: each needs the one before
        for step in reference[:4]:
            step()

    blocks = [ours["fp32"][0], ours["bf16"][0], reference_chain, ours["fp32"][1], ours["bf16"][1], reference[4]]
    with torch.no_grad():
        for rep in range(reps):             # rotate the order so no step always runs first or last
            for block in blocks[rep % len(blocks):] + blocks[:rep % len(blocks)]:
                block()
        extra = {}
        if full:                            # our real 960-px pass (4 crops in one batch), once per dtype
            image = torch.rand(1, 3, 960, 960, generator=gen)
            for dtype, extractor in (("fp32", sd32), ("bf16", sd16)):
                step = _Step("sd_960_4crops", lambda: extractor.extract_pixels(image))
                step()
                extra[dtype] = step

    shapes = {str(layer): list(v.shape) for layer, v in last.items()}

    def config(params: float, steps: list[_Step]) -> dict:
        activation = max(step.activation_peak for step in steps)
        return {"params_gib": round(params, 3), "activation_peak_gib": round(activation / GIB, 3),
                "peak_rss_gib": round((base_rss + activation) / GIB + params, 3)}

    out = {}
    for dtype, (u, v, d) in (("fp32", (unet, vae, dino)), ("bf16", (unet16, vae16, dino16))):
        sd_step, dino_step = ours[dtype]
        row = {"dtype": "float32" if dtype == "fp32" else "bfloat16", "sd_one_crop_s": sd_step.as_dict()["best_s"],
               "sd_one_crop_runs_s": sd_step.as_dict()["runs_s"], "sd_one_crop_feature_shapes": shapes,
               "sd_per_image_s": _round(CROPS * min(sd_step.runs)), "dino_s": dino_step.as_dict()["best_s"],
               "dino_runs_s": dino_step.as_dict()["runs_s"],
               "per_image_s": _round(CROPS * min(sd_step.runs) + min(dino_step.runs)),
               **config(_param_gib(u, v, d), [sd_step, dino_step])}
        if dtype in extra:
            row["sd_960_4crops_measured_s"] = extra[dtype].as_dict()["best_s"]
            row["sd_960_4crops_peak_rss_gib"] = config(_param_gib(u, v, d), [extra[dtype]])["peak_rss_gib"]
        out[f"ours_{dtype}"] = row
    per_crop = sum(min(step.runs) for step in reference[:4])
    out["reference_fp32"] = {
        "dtype": "float32", "per_crop_components": {step.name: step.as_dict() for step in reference[:4]},
        "sd_one_crop_s": _round(per_crop), "sd_per_image_s": _round(CROPS * per_crop),
        "dino_s": _round(min(reference[4].runs)), "dino_runs_s": reference[4].as_dict()["runs_s"],
        "per_image_s": _round(CROPS * per_crop + min(reference[4].runs)),
        **config(_param_gib(unet, vae, decoder, clip, dino), reference)}
    ratio_fp32 = out["ours_fp32"]["per_image_s"] / out["reference_fp32"]["per_image_s"]
    ratio_bf16 = out["ours_bf16"]["per_image_s"] / out["reference_fp32"]["per_image_s"]
    return {
        "method": (f"random-init real-size architectures, batch 1, {torch.get_num_threads()} torch threads; each SD "
                   f"component timed on ONE 512-px crop (best of {reps}, ours and reference interleaved, order rotated each repetition) and "
                   f"multiplied by the protocol's {CROPS} crops per 960-px image; DINOv2 once per 840-px image; "
                   f"peak RSS = RSS before any model + parameters of the configuration + largest activation rise"),
        "crops_factor": CROPS, "reps": reps, "build_s": build, "rss_before_models_gib": round(base_rss / GIB, 3),
        **out,
        "ratio_ours_fp32_to_reference": round(ratio_fp32, 3),
        "ratio_ours_bf16_to_reference": round(ratio_bf16, 3),
        "target_ratio_fp32": 0.6, "target_met": bool(ratio_fp32 <= 0.6),
    }
