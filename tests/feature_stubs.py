"""Test extractors for the feature cache: hand-made features chosen per image by its content.

They implement what :class:`sdfuse.features.cache.CachedExtractor` wraps (a ``config`` with a
``fingerprint()`` and ``extract(image) → {layer or block: (C, h, w) tensor}``), so the real cache,
loaders and evaluation run on features whose right answers the tests know by construction.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from sdfuse.features.cache import CachedExtractor


@dataclass(frozen=True)
class StubConfig:
    """A fingerprint that names the stub, so two stubs never share cache entries."""

    name: str

    def fingerprint(self) -> dict:
        return {"stub": self.name}


def pixel_digest(image: Image.Image) -> str:
    """sha256 of an image's decoded RGB pixels and size: identifies an image by its content."""
    rgb = image.convert("RGB")
    return hashlib.sha256(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()


class ColourKeyedExtractor:
    """Features picked by the image's top-left pixel colour (each test image is painted one colour)."""

    def __init__(self, name: str, features: dict[tuple[int, int, int], dict[int, torch.Tensor]]):
        self.config = StubConfig(name)
        self.features = features

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        return {key: value.clone() for key, value in self.features[image.convert("RGB").getpixel((0, 0))].items()}


class FunctionExtractor:
    """Features computed by ``function(image key)`` where the key is looked up by the image's pixel digest."""

    def __init__(self, name: str, keys: dict[str, object], function: Callable[[object], dict[int, torch.Tensor]]):
        self.config = StubConfig(name)
        self.keys = keys
        self.function = function
        self.calls = 0

    def extract(self, image: Image.Image) -> dict[int, torch.Tensor]:
        self.calls += 1
        return self.function(self.keys[pixel_digest(image)])


def cached(extractor, root: Path, kind: str) -> CachedExtractor:
    """The stub behind the real on-disk feature cache."""
    return CachedExtractor(extractor, root, kind)


def solid_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    """A one-colour RGB PNG of ``size`` (W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def token_map(tokens: np.ndarray, grid: int) -> torch.Tensor:
    """(G², C) row-major tokens → the (C, G, G) map an extractor returns."""
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.float32)
    return tokens.T.reshape(tokens.shape[1], grid, grid).contiguous()


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, where tqdm draws its bar unless told not to."""

    def isatty(self) -> bool:
        return True
