"""ODISE's implicit captioner: CLIP-image conditioning of the SD UNet (PROTOCOL §2.3c).

c = u + tanh(α_c) ⊙ (W_c·e + b_c + P_c) replaces the text context and o = tanh(α_t) ⊙ (W_t·e + b_t + P_t)
is added to the UNet time embedding, with e the (unnormalised) CLIP ViT-L/14-336 image embedding of
each crop. Only these four learned tensors come from the ODISE checkpoint, which is under NVIDIA's
non-commercial licence and is never downloaded by sdfuse: the user passes its path.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsafeWeightsError, WeightsNotFoundError
from .weights import local_weights, missing_weights

ODISE_PREFIX = "backbone.feature_extractor."
CAPTIONER_KEYS = (
    "alpha_cond", "alpha_cond_time_embed",
    "clip_project.linear.weight", "clip_project.linear.bias", "clip_project.positional_embedding",
    "time_embed_project.linear.weight", "time_embed_project.linear.bias", "time_embed_project.positional_embedding",
)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PositionalLinear(nn.Module):
    """x ↦ W·x + b + P, broadcast over P's sequence axis."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, positional: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        self.linear.load_state_dict({"weight": weight, "bias": bias})
        self.positional_embedding = nn.Parameter(positional.reshape(1, -1, weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unsqueeze(1) + self.positional_embedding


class ImplicitCaptioner(nn.Module):
    """The four captioner tensors: maps an image embedding to (context c, time offset o)."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        self.clip_project = PositionalLinear(state["clip_project.linear.weight"], state["clip_project.linear.bias"],
                                             state["clip_project.positional_embedding"])
        self.time_embed_project = PositionalLinear(state["time_embed_project.linear.weight"],
                                                   state["time_embed_project.linear.bias"],
                                                   state["time_embed_project.positional_embedding"])
        self.alpha_cond = nn.Parameter(state["alpha_cond"])
        self.alpha_cond_time_embed = nn.Parameter(state["alpha_cond_time_embed"])

    @torch.no_grad()
    def forward(self, image_embed: torch.Tensor, empty_prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, D_clip) embeddings, (1, 77, D_text) empty prompt → c (n, 77, D_text), o (n, D_time)."""
        context = empty_prompt + torch.tanh(self.alpha_cond) * self.clip_project(image_embed)
        offset = torch.tanh(self.alpha_cond_time_embed) * self.time_embed_project(image_embed)
        return context, offset[:, 0]


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:  # pragma: no mutate block  (checkpoint reading)
    """All tensors of an ODISE checkpoint (.pth read with weights_only=True, or .safetensors)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsNotFoundError(
            f"ODISE checkpoint {file} not found. Download odise_label_coco_50e-b67d2efc.pth from the ODISE "
            f"v1.0.0 release (NVIDIA Source Code License, non-commercial) and pass its path, "
            f"or use conditioning='empty'.")
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except (SafetensorError, OSError, ValueError) as error:
            raise WeightsNotFoundError(f"{file} is not a readable safetensors file ({error}); download it again") from error
    import pickle

    try:  # weights_only=True: only tensors and plain containers are rebuilt, never arbitrary objects
        raw = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                      lines[-1] if lines else "unsupported content")[:300]
        raise UnsafeWeightsError(
            f"refused to load {file}: it holds Python objects other than tensors, and sdfuse never unpickles "
            f"those from a user path (torch.load with weights_only=True: {reason}). Use the original "
            f"ODISE checkpoint, or save its tensors as .safetensors on a machine you trust.") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise WeightsNotFoundError(f"{file} is not a readable PyTorch checkpoint ({type(error).__name__}: "
                                   f"{str(error)[:300]}); download it again") from error
    raw = raw.get("model", raw) if isinstance(raw, dict) else raw
    if not isinstance(raw, dict):
        raise WeightsNotFoundError(f"{file} holds a {type(raw).__name__}, not a dict of tensors; is it an ODISE checkpoint?")
    return raw


def read_captioner_state(path: str) -> dict[str, torch.Tensor]:  # pragma: no mutate block  (checkpoint reading)
    """The four implicit-captioner tensors of an ODISE checkpoint."""
    raw = read_checkpoint(path)
    state = {k.removeprefix(ODISE_PREFIX): v for k, v in raw.items() if k.removeprefix(ODISE_PREFIX) in CAPTIONER_KEYS}
    missing = sorted(set(CAPTIONER_KEYS) - set(state))
    if missing:
        raise WeightsNotFoundError(f"{path} lacks the implicit-captioner tensors {missing}; is it an ODISE checkpoint?")
    return {k: v.float() for k, v in state.items()}


def load_captioner(checkpoint: str, clip_model: str, time_dim: int) -> tuple[ImplicitCaptioner, nn.Module]:  # pragma: no mutate block  (checkpoint reading)
    """The captioner from ``checkpoint`` and the CLIP image tower it reads (transformers layout)."""
    from transformers import CLIPVisionModelWithProjection

    captioner = ImplicitCaptioner(read_captioner_state(checkpoint)).eval()
    if captioner.time_embed_project.linear.out_features != time_dim:
        raise WeightsNotFoundError(f"captioner time projection has {captioner.time_embed_project.linear.out_features} "
                                   f"outputs but the UNet's time embedding has {time_dim}")
    source, local = local_weights(clip_model, None, "clip")  # fails at once when unreachable
    try:
        clip = CLIPVisionModelWithProjection.from_pretrained(source, use_safetensors=True,
                                                             local_files_only=local).eval()
    except (OSError, ValueError) as error:
        raise missing_weights(clip_model, None, "clip", error) from error
    return captioner, clip


@torch.no_grad()
def clip_image_embedding(clip: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """Projected CLS embedding, not normalised, of square crops in [0, 1] (PROTOCOL §2.3c, AMBIG-19).

    Bicubic resize to the tower's input size without antialiasing (torchvision 0.14 behaviour),
    then OpenAI CLIP mean/std.
    """
    side = clip.config.image_size
    x = F.interpolate(crops.float(), size=(side, side), mode="bicubic", align_corners=False, antialias=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return clip(pixel_values=(x - mean) / std).image_embeds
