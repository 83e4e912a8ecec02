"""The smoke and rehearsal profiles' assets: random models in the real on-disk layouts, and fixture data.

The SD stack is saved as a diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``,
``scheduler/``, ``tokenizer/``, ``text_encoder/``, safetensors weights) and DINOv2 as a timm folder
(``config.json`` + ``model.safetensors``), so both load back through exactly the code that loads the
real weights (a local folder, as ``-p sd_model=/path`` does). Everything is seeded: the same files on
every machine.

- **smoke**: tiny twins with the module structure of SD v1.5 and DINOv2 ViT-B/14, small images.
- **rehearsal**: SD v1.5 (UNet 859.5 M, VAE 83.7 M, CLIP ViT-L/14 text encoder 123 M) and DINOv2
  ViT-B/14 (86.6 M) at their real sizes, about 4.6 GB on disk, and the fixtures at real image sizes
  (long sides about 500 px). Building takes about a minute on 2 CPU cores.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.datasets.synthetic import REAL_SIZE_SCALE, make_spair_like
from ..data.datasets.synthetic_formats import make_cub_like, make_pfpascal_like, make_tss_like
from ..data.storage import process_umask
from ..errors import ConfigError
from ..features.architectures import (SD15_SCHEDULER, SD15_TEXT_ENCODER, SD15_UNET, SD15_VAE, SMOKE_DINO,
                                      SMOKE_TEXT_ENCODER, SMOKE_UNET, SMOKE_VAE)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetSpec:
    """What one profile's assets are: model configurations, the tokenizer's start and end ids, the
    fixture image scale, a version stamp."""

    version: str
    unet: dict
    vae: dict
    text_encoder: dict
    prompt_token_ids: tuple[int, int]
    dino: dict = field(default_factory=dict)
    image_scale: float = 1.0


ASSETS = {
    "smoke": AssetSpec("2", SMOKE_UNET, SMOKE_VAE, SMOKE_TEXT_ENCODER, (0, 2), SMOKE_DINO),
    "rehearsal": AssetSpec("1", SD15_UNET, SD15_VAE, SD15_TEXT_ENCODER, (49406, 49407), {}, REAL_SIZE_SCALE),
}
"""Profile → asset specification; a version bump rebuilds that profile's folder."""

START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"


def clip_tokenizer(folder: Path, start_id: int, end_id: int):
    """A CLIP BPE tokenizer over a hand-made vocabulary: "!", a–z and their word-final forms, with the
    start and end tokens at ``start_id`` and ``end_id`` (unused filler tokens in between).

    With CLIP's real ids (49406, 49407) the empty prompt is encoded exactly as the real tokenizer
    encodes it: start, then end repeated to 77 tokens (PROTOCOL §2.3c).
    """
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = iter(["!"] + letters + [f"{c}</w>" for c in letters])
    size = max(start_id, end_id, 54) + 1
    special = {start_id: START_TOKEN, end_id: END_TOKEN}
    tokens = [special.get(i) or next(words, f"<|unused{i}|>") for i in range(size)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         pad_token=END_TOKEN, model_max_length=77)


def make_sd(folder: Path, spec: AssetSpec) -> Path:
    """Save an SD-v1.5-shaped diffusers pipeline of ``spec``'s sizes (random weights, seed 0) into ``folder``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**spec.unet)
    vae = AutoencoderKL(**spec.vae)
    text_encoder = CLIPTextModel(CLIPTextConfig(**spec.text_encoder))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_tokenizer(Path(tmp), *spec.prompt_token_ids)
        scheduler = PNDMScheduler(**SD15_SCHEDULER, skip_prk_steps=True, steps_offset=1)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()               # its "Writing model shards" bar is noise here
        pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_dino(folder: Path, spec: AssetSpec) -> Path:
    """Save a DINOv2 ViT-B/14-shaped timm model of ``spec``'s sizes (12 blocks, seed 0) into ``folder``."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, **spec.dino)
    save_for_hf(model, folder, model_args=dict(spec.dino), safe_serialization=True)
    return folder


def ensure_assets(profile: str, root: str | os.PathLike) -> Path:
    """Build ``profile``'s models and fixture datasets under ``root`` once; returns ``root``.

    Building happens in a temporary sibling folder that is renamed into place, so an interrupted
    build never leaves a half-made folder behind; the folder gets the permissions of the umask.
    """
    spec = ASSETS[profile]
    root = Path(root).expanduser()
    stamp = root / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == spec.version:
        return root
    if root.is_dir() and not stamp.is_file() and any(root.iterdir()):
        raise ConfigError(f"{root} holds other files and no {profile} assets; building them would replace the "
                          f"folder: choose an empty or new folder")
    log.warning("building the %s profile's models and data in %s (once%s)", profile, root,
                ": about a minute and 4.6 GB" if profile == "rehearsal" else "")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    tmp.chmod(0o777 & ~process_umask())                            # mkdtemp made it 0700: shared homes need the umask's
    try:
        make_sd(tmp / "models" / "sd", spec)
        make_dino(tmp / "models" / "dino", spec)
        make_spair_like(tmp / "SPair-71k", scale=spec.image_scale)
        make_pfpascal_like(tmp, scale=spec.image_scale)
        make_tss_like(tmp, scale=spec.image_scale)
        make_cub_like(tmp, scale=spec.image_scale)
        (tmp / "VERSION").write_text(spec.version + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
