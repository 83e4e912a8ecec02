"""Stable Diffusion v1.5 decoder features through diffusers (PROTOCOL §2).

Per image: resize-pad to 16·G px (§1.1), cut the 4-crop sliding window (§2.3b), encode each
crop with the VAE posterior mean × 0.18215 (§2.3d), add one shared noise tensor at t = 100
(§2.3e), run the UNet with the empty-prompt (or implicit-captioner) conditioning (§2.3c) and
capture the paper's layers 2, 5, 8 (§2.4) before each upsampler; the UNet stops after the last
needed block and the VAE decoder is never run. Overlapping crop features are averaged.

Out of memory: the crops of an image go through the VAE and UNet as one batch; when that raises
``torch.OutOfMemoryError`` the batch is halved (down to one crop at a time, kept for later images)
and, on an accelerator, one crop that still does not fit moves the models to the CPU. Each step
logs a warning; crops are independent in the UNet, so the features are the same up to float
rounding (PROTOCOL §2.3b's averaging is unchanged).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from PIL import Image

from ..data.images import frame_pixels
from ..errors import ConfigError, ResourceError
from ..protocol.geometry import SD_CELL
from .weights import file_identity, local_weights, missing_weights, weights_identity

log = logging.getLogger(__name__)

LATENT_SCALE = 0.18215
"""SD v1's latent scale factor (PROTOCOL §2.3d)."""
VAE_FACTOR = 8
"""Pixels per latent cell."""
EXTRACTOR_VERSION = "sd-1"
"""Bumped whenever a code change alters the features; part of the cache fingerprint."""


class PaperLayer(NamedTuple):
    """Where the paper's UNet layer n is captured in diffusers, and its stride in input pixels."""

    module: str
    stride: int


PAPER_LAYERS: dict[int, PaperLayer] = {
    2: PaperLayer("up_blocks.0.resnets.1", 64),
    5: PaperLayer("up_blocks.1.attentions.1", 32),
    8: PaperLayer("up_blocks.2.attentions.1", 16),
    11: PaperLayer("up_blocks.3.attentions.1", 8),
}
"""Paper layer (= LDM ``output_blocks`` index) → diffusers module whose output is captured (PROTOCOL §2.4)."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class SDConfig:
    """Every setting that changes the SD features (PROTOCOL §2; defaults = the paper's)."""

    model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    revision: str | None = None
    grid: int = 60
    crop: int = 512
    timestep: int = 100
    noise_seed: int = 42
    layers: tuple[int, ...] = (2, 5, 8)
    conditioning: str = "empty"
    captioner_checkpoint: str | None = None
    clip_model: str = "openai/clip-vit-large-patch14-336"
    edge_pad: bool = False
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:  # pragma: no mutate block  (input check)
        if self.grid <= 0 or self.grid % 4:
            raise ConfigError(f"grid must be a positive multiple of 4 (layer 2 sits at G/4), got {self.grid}")
        if self.crop % 64 or self.crop <= 0:
            raise ConfigError(f"crop must be a positive multiple of 64, got {self.crop}")
        if (self.image_size - min(self.crop, self.image_size)) % 64:
            raise ConfigError(f"16·G - crop must be a multiple of 64 so crops align with layer 2's cells; "
                              f"got G={self.grid}, crop={self.crop}")
        unknown = set(self.layers) - set(PAPER_LAYERS)
        if unknown or not self.layers:
            raise ConfigError(f"unknown SD layers {sorted(unknown)}; choose from {sorted(PAPER_LAYERS)}")
        if self.conditioning not in ("empty", "implicit"):
            raise ConfigError(f"conditioning must be 'empty' or 'implicit', got {self.conditioning!r}")
        if self.conditioning == "implicit" and not self.captioner_checkpoint:
            raise ConfigError("conditioning='implicit' needs captioner_checkpoint=/path/to/odise_label_coco_50e-b67d2efc.pth")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not 0 <= self.timestep < 1000:
            raise ConfigError(f"timestep must be in [0, 999], got {self.timestep}")
        check_device(self.device)

    @property
    def image_size(self) -> int:
        """SD input side 16·G px (PROTOCOL §1.1)."""
        return SD_CELL * self.grid

    def fingerprint(self) -> dict:
        """The settings that key the feature cache, with the weights' identity instead of a path."""
        fields = asdict(self)
        fields.pop("device")
        fields["model"] = weights_identity(self.model, self.revision)
        if self.captioner_checkpoint:
            fields["captioner_checkpoint"] = file_identity(self.captioner_checkpoint)
        fields["version"] = EXTRACTOR_VERSION
        return fields


def check_device(device: str) -> None:  # pragma: no mutate block  (input check)
    """Reject a device string torch cannot parse, before any model loads."""
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ConfigError(f"device {device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'") from error


def require_device(device: str) -> None:  # pragma: no mutate block  (device handling)
    """Before loading weights: an accelerator that is named must be visible, else a ConfigError says so."""
    kind = torch.device(device)
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (kind.index or 0) >= count:
            raise ConfigError(f"device={device!r} but torch sees {count} CUDA GPU(s); run with -p device=cpu "
                              f"(slow) or on a machine with that GPU")
    elif kind.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} but MPS is not available; run with -p device=cpu")


def window_starts(size: int, crop: int) -> list[int]:
    """Start offsets of the sliding window along one axis (PROTOCOL §2.3b).

    Window side min(crop, size), stride = side; the last window is clamped to end at the border,
    so 960 px with 512-px crops gives starts {0, 448}.
    """
    side = min(crop, size)
    count = max(size - side + side - 1, 0) // side + 1
    return [max(min(i * side + side, size) - side, 0) for i in range(count)]


def average_windows(crop_maps: torch.Tensor, starts: list[tuple[int, int]], size: int, stride: int) -> torch.Tensor:
    """Place each crop's map at its window and average where windows overlap (PROTOCOL §2.3b).

    ``crop_maps`` is (n, C, h, w) for n windows with top-left pixel ``starts[i] = (y, x)``;
    the result is (C, size/stride, size/stride).
    """
    n, channels, h, w = crop_maps.shape
    cells = size // stride
    total = crop_maps.new_zeros((channels, cells, cells))
    count = crop_maps.new_zeros((1, cells, cells))
    for i, (y, x) in enumerate(starts):
        r, c = y // stride, x // stride
        total[:, r:r + h, c:c + w] += crop_maps[i]
        count[:, r:r + h, c:c + w] += 1
    return total / count


class _StopUNet(Exception):
    """Raised by the last needed hook to skip the rest of the UNet."""


@dataclass
class SDModels:
    """The loaded parts that the feature pass needs (no VAE decoder is ever run)."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    alpha_bar: float
    empty_prompt: torch.Tensor
    captioner: torch.nn.Module | None = None
    clip: torch.nn.Module | None = None


def load_sd_models(config: SDConfig) -> SDModels:
    """UNet, VAE encoder, the noise schedule's ᾱ at the configured timestep and the empty-prompt embedding
    (PROTOCOL §2.3), from a diffusers folder or hub id."""
    unet, vae, scheduler, tokenizer, text_encoder = read_sd_components(config)
    vae.decoder = None  # never run (PROTOCOL §2.3g); frees its memory
    empty_prompt = empty_prompt_embedding(tokenizer, text_encoder)
    models = SDModels(unet=unet.eval(), vae=vae.eval(),
                      alpha_bar=float(scheduler.alphas_cumprod[config.timestep]),
                      empty_prompt=empty_prompt)
    if config.conditioning == "implicit":
        from .captioner import load_captioner

        models.captioner, models.clip = load_captioner(config.captioner_checkpoint, config.clip_model,
                                                       time_dim=unet.time_embedding.linear_2.out_features)
    return models


def read_sd_components(config: SDConfig) -> tuple:  # pragma: no mutate block  (checkpoint reading)
    """UNet, VAE, DDPM scheduler, CLIP tokenizer and text encoder of a diffusers folder or hub id, safetensors
    only, in the configured dtype (the text encoder in float32)."""
    source, local = local_weights(config.model, config.revision, "sd")  # fails at once when unreachable
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = DTYPES[config.dtype]
    common = dict(revision=None if local else config.revision, local_files_only=local)
    try:
        return (UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype,
                                                     use_safetensors=True, **common),
                AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype,
                                              use_safetensors=True, **common),
                DDPMScheduler.from_pretrained(source, subfolder="scheduler", **common),
                CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **common),
                CLIPTextModel.from_pretrained(source, subfolder="text_encoder", use_safetensors=True, **common))
    except (OSError, ValueError) as error:
        raise missing_weights(config.model, config.revision, "sd", error) from error


@torch.no_grad()
def empty_prompt_embedding(tokenizer, text_encoder) -> torch.Tensor:
    """CLIP text-encoder last hidden state of "" padded to 77 tokens, (1, 77, D) (PROTOCOL §2.3c)."""
    ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids)[0].float()


class SDFeatureExtractor:
    """Paper layers of SD v1.5's UNet decoder for one image (PROTOCOL §2).

    ``extract(image)`` returns {paper layer: float32 tensor (C, G·16/stride, G·16/stride)},
    e.g. at G = 60: layer 2 (1280, 15, 15), layer 5 (1280, 30, 30), layer 8 (640, 60, 60).
    """

    def __init__(self, config: SDConfig, models: SDModels | None = None):
        self.config = config
        self._models = models
        self._chunk: int | None = None  # crops per UNet batch after an out-of-memory; None = all

    @property
    def models(self) -> SDModels:
        """The loaded models (loaded on first use, so a cache hit never loads them)."""
        if self._models is None:
            require_device(self.config.device)
            log.info("loading SD weights %s", self.config.model)
            self._models = load_sd_models(self.config)
            for module in (self._models.unet, self._models.vae, self._models.captioner, self._models.clip):
                if module is not None:
                    module.to(self.config.device)
        return self._models

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        """Features of a PIL image: resize-pad to 16·G (§1.1), then :meth:`extract_pixels`.

        Any mode is accepted (:func:`sdfuse.data.images.frame_pixels`).
        """
        pixels = frame_pixels(image, self.config.image_size, self.config.edge_pad)
        return {layer: maps.cpu() for layer, maps in self.extract_pixels(pixels).items()}

    @torch.no_grad()
    def extract_pixels(self, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        """Float32 features, on the model's device, of a (1, 3, S, S) tensor in [0, 1] (sliding window, §2.3b)."""
        size = pixels.shape[-1]
        crop = min(self.config.crop, size)
        axis = window_starts(size, crop)
        starts = [(y, x) for y in axis for x in axis]
        crops = torch.cat([pixels[:, :, y:y + crop, x:x + crop] for y, x in starts])
        per_crop = self.crop_features(crops)
        return {layer: average_windows(maps.float(), starts, size, PAPER_LAYERS[layer].stride)
                for layer, maps in per_crop.items()}

    def crop_features(self, crops: torch.Tensor) -> dict[int, torch.Tensor]:
        """VAE mean → noise at t → UNet with hooks, for a batch of crops in [0, 1] (§2.3c–f).

        Runs the crops in chunks that fit: all at once, and after an out-of-memory error half as
        many, down to one; a single crop that does not fit on an accelerator moves to the CPU.
        """
        n = len(crops)
        while True:
            chunk = min(self._chunk or n, n)
            try:
                parts = [self._crop_forward(crops[i:i + chunk]) for i in range(0, n, chunk)]
                break
            except torch.OutOfMemoryError as error:
                self._after_out_of_memory(error, chunk)
        if len(parts) == 1:
            return parts[0]
        return {layer: torch.cat([part[layer].to(parts[-1][layer].device) for part in parts])
                for layer in parts[0]}

    def _after_out_of_memory(self, error: torch.OutOfMemoryError, chunk: int) -> None:  # pragma: no mutate block  (device handling)
        """Shrink the chunk, else move to the CPU, else raise :class:`~sdfuse.errors.ResourceError`."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        cause = str(error).strip().splitlines()[0][:200] if str(error).strip() else "out of memory"
        if chunk > 1:
            self._chunk = chunk // 2
            log.warning("out of memory running %d SD crops at once (%s); retrying with %d at a time",
                        chunk, cause, self._chunk)
            return
        device = next(self.models.unet.parameters()).device
        if device.type != "cpu":
            log.warning("out of memory on %s even for one SD crop (%s); moving the SD models to the CPU "
                        "(much slower; use dtype=float16 or a larger GPU to avoid this)", device, cause)
            m = self.models
            for module in (m.unet, m.vae, m.captioner, m.clip):
                if module is not None:
                    module.to("cpu")
            return
        raise ResourceError(f"out of memory running the SD UNet on one {self.config.crop}-px crop on the CPU "
                            f"({cause}). Free memory, use dtype=bfloat16, or a machine with more memory.") from error

    def _crop_forward(self, crops: torch.Tensor) -> dict[int, torch.Tensor]:
        """One VAE + UNet pass over a batch of crops (see :meth:`crop_features`)."""
        m = self.models
        device = next(m.unet.parameters()).device
        dtype = DTYPES[self.config.dtype]
        crops = crops.to(device)
        latent = m.vae.encode((crops.to(dtype) - 0.5) / 0.5).latent_dist.mean * LATENT_SCALE
        noise = shared_noise(latent.shape[-1], self.config.noise_seed).to(device=device, dtype=dtype)
        noisy = math.sqrt(m.alpha_bar) * latent + math.sqrt(1 - m.alpha_bar) * noise
        cond, time_offset = self._conditioning(crops, len(crops))
        captured: dict[int, torch.Tensor] = {}
        last = max(self.config.layers)
        hooks = []
        for layer in self.config.layers:
            module = m.unet.get_submodule(PAPER_LAYERS[layer].module)
            hooks.append(module.register_forward_hook(_capture(captured, layer, stop=layer == last)))
        if time_offset is not None:
            hooks.append(m.unet.time_embedding.register_forward_hook(lambda mod, inp, out: out + time_offset))
        try:
            timestep = torch.tensor([self.config.timestep], device=device)
            m.unet(noisy, timestep, encoder_hidden_states=cond.to(device=device, dtype=dtype))
        except _StopUNet:
            pass
        finally:
            for hook in hooks:
                hook.remove()
        return captured

    def _conditioning(self, crops: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.models
        dtype = DTYPES[self.config.dtype]
        device = crops.device
        empty = m.empty_prompt.to(device=device, dtype=dtype)
        if m.captioner is None:
            return empty.expand(n, -1, -1), None
        from .captioner import clip_image_embedding

        embed = clip_image_embedding(m.clip, crops)
        cond, offset = m.captioner(embed, m.empty_prompt.to(device))
        return cond.to(dtype), offset.to(dtype)


def _capture(store: dict, layer: int, stop: bool):
    def hook(module, inputs, output):
        store[layer] = output[0] if isinstance(output, tuple) else output
        if stop:
            raise _StopUNet
    return hook


def shared_noise(latent_side: int, seed: int) -> torch.Tensor:
    """The one noise tensor shared by all crops and images: randn(1, 4, s, s), CPU generator (§2.3e)."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((1, 4, latent_side, latent_side), generator=generator)
