"""DINOv2 ViT-B/14 patch tokens through timm (PROTOCOL §4).

Per image: resize-pad to 14·G px (§1.1), ImageNet normalisation, patch embedding, the
position embedding interpolated the way the DINOv2 hub model does it (bicubic with scale factor
(G + 0.1)/M, no antialias; timm's own resampling differs), then the transformer blocks; the
tokens after the selected blocks are returned *before* the final norm, CLS dropped.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..data.images import frame_pixels
from ..errors import ConfigError
from ..protocol.geometry import DINO_PATCH
from .sd import DTYPES, check_device, require_device
from .weights import local_weights, missing_weights, weights_identity

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATE_OFFSET = 0.1
"""DINOv2 hub's ``interpolate_offset`` (PROTOCOL §4)."""
EXTRACTOR_VERSION = "dino-1"


@dataclass(frozen=True)
class DinoConfig:
    """Every setting that changes the DINOv2 features (PROTOCOL §4; defaults = the paper's)."""

    model: str = "timm/vit_base_patch14_dinov2.lvd142m"
    revision: str | None = None
    grid: int = 60
    blocks: tuple[int, ...] = (11,)
    edge_pad: bool = False
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:  # pragma: no mutate block  (input check)
        if self.grid <= 0:
            raise ConfigError(f"grid must be positive, got {self.grid}")
        if not self.blocks or min(self.blocks) < 0:
            raise ConfigError(f"blocks must be non-negative block indices (0-based; the last of ViT-B is 11), got {self.blocks}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        depth = model_depth(self.model)
        if depth is not None and max(self.blocks) >= depth:
            raise ConfigError(f"DINOv2 block {max(self.blocks)} requested but {self.model} has {depth} blocks "
                              f"(0-based: the last is {depth - 1})")
        check_device(self.device)

    @property
    def image_size(self) -> int:
        """DINO input side 14·G px: the annotation frame (PROTOCOL §1.1)."""
        return DINO_PATCH * self.grid

    def fingerprint(self) -> dict:
        """The settings that key the feature cache, with the weights' identity instead of a path."""
        fields = asdict(self)
        fields.pop("device")
        fields["model"] = weights_identity(self.model, self.revision)
        fields["version"] = EXTRACTOR_VERSION
        return fields


_VIT_DEPTHS = {"small": 12, "base": 12, "large": 24, "giant2": 40, "giant": 40}


def model_depth(model: str) -> int | None:  # pragma: no mutate block  (input check)
    """Transformer blocks of a timm ViT named by a local folder (its config.json) or a hub id, without loading it.

    None when it cannot be told (then the block check happens after loading, in :meth:`DinoFeatureExtractor.extract_pixels`).
    """
    config = Path(model).expanduser() / "config.json"
    name = model.rsplit("/", 1)[-1]
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return None
        depth = data.get("model_args", {}).get("depth") if isinstance(data, dict) else None
        if isinstance(depth, int) and not isinstance(depth, bool):
            return depth
        name = str(data.get("architecture", "")) if isinstance(data, dict) else ""
    return next((depth for size, depth in _VIT_DEPTHS.items() if f"vit_{size}_" in name), None)


def hub_position_embedding(pos_embed: torch.Tensor, grid: int, num_prefix: int = 1) -> torch.Tensor:
    """Position embedding for a grid×grid input, interpolated as DINOv2's hub model does (PROTOCOL §4).

    ``pos_embed`` is (1, prefix + M², C) with an M×M patch grid (37 for DINOv2 pretrained at 518);
    the patch part is resized bicubically with scale_factor (grid + 0.1)/M, align_corners False,
    no antialias. Returns (1, prefix + grid², C).
    """
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    side = int(round(patches.shape[1] ** 0.5))
    channels = patches.shape[-1]
    scale = (grid + INTERPOLATE_OFFSET) / side
    grid_embed = patches.reshape(1, side, side, channels).permute(0, 3, 1, 2)
    resized = F.interpolate(grid_embed.float(), scale_factor=(scale, scale), mode="bicubic",
                            align_corners=False, antialias=False)
    if resized.shape[-2:] != (grid, grid):
        raise ValueError(f"interpolated grid {tuple(resized.shape[-2:])} != ({grid}, {grid})")
    resized = resized.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, grid * grid, channels)
    return torch.cat([prefix, resized], dim=1)


def load_dino_model(config: DinoConfig) -> torch.nn.Module:  # pragma: no mutate block  (checkpoint reading)
    """timm DINOv2 from a local timm folder (config.json + model.safetensors) or an hf-hub id@revision.

    A hub id already in the Hugging Face cache loads from its snapshot folder without network;
    one that is not fails at once when the hub is unreachable (:func:`~.weights.local_weights`).
    timm reads safetensors first and any other weight file with ``weights_only=True``.
    """
    source, local = local_weights(config.model, config.revision, "dino")  # fails at once when unreachable
    import timm

    if local:
        name = f"local-dir:{source}"
    else:
        name = f"hf-hub:{config.model}" + (f"@{config.revision}" if config.revision else "")
    try:
        model = timm.create_model(name, pretrained=True, dynamic_img_size=True, num_classes=0)
    except (OSError, ValueError, RuntimeError) as error:
        raise missing_weights(config.model, config.revision, "dino", error) from error
    if getattr(model, "no_embed_class", False) or getattr(model, "reg_token", None) is not None:
        raise ConfigError(f"{config.model} is not a DINOv2 ViT without registers (class token in pos_embed expected)")
    return model.eval().to(DTYPES[config.dtype])


class DinoFeatureExtractor:
    """DINOv2 tokens after the configured blocks (PROTOCOL §4).

    ``extract(image)`` returns {block index: float32 tensor (C, G, G)}; at G = 60 for ViT-B/14
    block 11: (768, 60, 60), token index 60·row + col.
    """

    def __init__(self, config: DinoConfig, model: torch.nn.Module | None = None):
        self.config = config
        self._model = model

    @property
    def model(self) -> torch.nn.Module:
        """The loaded model (loaded on first use, so a cache hit never loads it)."""
        if self._model is None:
            require_device(self.config.device)
            log.info("loading DINOv2 weights %s", self.config.model)
            self._model = load_dino_model(self.config).to(self.config.device)
        return self._model

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        """Features of a PIL image: resize-pad to 14·G (§1.1), ImageNet normalisation, :meth:`extract_pixels`.

        Any mode is accepted (:func:`sdfuse.data.images.frame_pixels`).
        """
        pixels = frame_pixels(image, self.config.image_size, self.config.edge_pad)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return {block: tokens.cpu() for block, tokens in self.extract_pixels((pixels - mean) / std).items()}

    @torch.no_grad()
    def extract_pixels(self, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        """Float32 tokens (C, G, G), on the model's device, of a normalised (1, 3, 14·G, 14·G) tensor."""
        model = self.model
        param = next(model.parameters())
        x = model.patch_embed(pixels.to(device=param.device, dtype=param.dtype))
        batch, rows, cols, channels = x.shape
        if rows != cols:
            raise ConfigError(f"square inputs only, got a {rows}×{cols} token grid")
        prefix = model.cls_token.expand(batch, -1, -1)
        x = torch.cat([prefix, x.reshape(batch, rows * cols, channels)], dim=1)
        x = x + hub_position_embedding(model.pos_embed, rows, num_prefix=1)
        x = model.norm_pre(model.patch_drop(model.pos_drop(x)))
        last = max(self.config.blocks)
        if last >= len(model.blocks):
            raise ConfigError(f"block {last} requested but the model has {len(model.blocks)} blocks (0-based)")
        out = {}
        for index, block in enumerate(model.blocks[: last + 1]):
            x = block(x)
            if index in self.config.blocks:
                tokens = x[:, 1:].float()
                out[index] = tokens[0].T.reshape(channels, rows, cols).contiguous()
        return out
