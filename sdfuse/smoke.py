"""The smoke profile's assets: tiny random models in the real on-disk layouts, and fixture data.

The SD stack is saved as a diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``,
``scheduler/``, ``tokenizer/``, ``text_encoder/``, safetensors weights) and the DINOv2 twin as a
timm folder (``config.json`` + ``model.safetensors``), so both load back through exactly the code
that loads the real weights. Everything is seeded: the same files on every machine.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .datasets.synthetic import make_spair_like
from .datasets.synthetic_formats import make_cub_like, make_pfpascal_like, make_tss_like
from .features.architectures import SD15_SCHEDULER, SMOKE_DINO, SMOKE_TEXT_ENCODER, SMOKE_UNET, SMOKE_VAE

log = logging.getLogger(__name__)

SMOKE_VERSION = "2"
"""Bumped whenever the generated assets change; a stale smoke folder is rebuilt."""


def _tiny_tokenizer(folder: Path):
    """A CLIP BPE tokenizer over a 32-token vocabulary (start, end, a–z and their word-final forms)."""
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "!", "<|endoftext|>"] + letters + [f"{c}</w>" for c in letters]
    vocab = {token: i for i, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         pad_token="<|endoftext|>", model_max_length=77)


def make_smoke_sd(folder: Path) -> Path:
    """Save a tiny SD-v1.5-shaped diffusers pipeline (random weights, seed 0) into ``folder``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SMOKE_UNET)
    vae = AutoencoderKL(**SMOKE_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**SMOKE_TEXT_ENCODER))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tiny_tokenizer(Path(tmp))
        scheduler = PNDMScheduler(**SD15_SCHEDULER, skip_prk_steps=True, steps_offset=1)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_smoke_dino(folder: Path) -> Path:
    """Save a tiny DINOv2-shaped timm model (12 blocks, 48 channels, seed 0) into ``folder``."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, **SMOKE_DINO)
    save_for_hf(model, folder, model_args=dict(SMOKE_DINO), safe_serialization=True)
    return folder


def ensure_smoke_assets(root: str | os.PathLike) -> Path:
    """Build the smoke models and fixture datasets under ``root`` once; returns ``root``.

    Building happens in a temporary sibling folder that is renamed into place, so an interrupted
    build never leaves a half-made smoke folder behind.
    """
    root = Path(root).expanduser()
    stamp = root / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == SMOKE_VERSION:
        return root
    log.info("building smoke assets in %s", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    try:
        make_smoke_sd(tmp / "models" / "sd")
        make_smoke_dino(tmp / "models" / "dino")
        make_spair_like(tmp / "SPair-71k")
        make_pfpascal_like(tmp)
        make_tss_like(tmp)
        make_cub_like(tmp)
        (tmp / "VERSION").write_text(SMOKE_VERSION + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
