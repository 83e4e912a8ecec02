"""Profiles: named parameter defaults, the only thing a notebook needs to know (DESIGN "Profiles").

``smoke`` runs tiny random models on synthetic SPair-format data on the CPU in seconds; its
numbers test the machinery, not the paper. ``paper`` uses SD v1.5 and DINOv2 ViT-B/14 with real
weights on the real datasets at G = 60.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .datasets import Pair, load_spair
from .errors import ConfigError
from .features.cache import CachedExtractor
from .features.dino import DinoConfig, DinoFeatureExtractor
from .features.sd import SDConfig, SDFeatureExtractor
from .manifests import load_manifest

PROFILES: dict[str, dict] = {
    # pca_dim: co-PCA size per SD layer (§3.1); pca_sweep: supp. Table 2's sizes. The smoke models'
    # layers have 32/32/16 channels and DINO 48, so 16 per layer keeps 3·d = DINO width as at 256/768.
    "smoke": dict(grid=12, sd_crop=128, pairs_per_category=20, dtype="float32", device="cpu",
                  pca_dim=16, pca_sweep=(24, 16, 8)),
    "paper": dict(grid=60, sd_crop=512, pairs_per_category=20, dtype="float32", device="auto",
                  pca_dim=256, pca_sweep=(384, 256, 128)),
}


def sdfuse_home() -> Path:
    """Where sdfuse keeps its cache and smoke assets: $SDFUSE_HOME, else ~/.cache/sdfuse."""
    return Path(os.environ.get("SDFUSE_HOME", Path.home() / ".cache" / "sdfuse")).expanduser()


def data_home() -> Path:
    """Where the real datasets live: $SDFUSE_DATA, else <sdfuse home>/data."""
    return Path(os.environ.get("SDFUSE_DATA", sdfuse_home() / "data")).expanduser()


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Run:
    """Everything one reproduction run needs, resolved from a profile and overrides."""

    profile: str
    data_root: Path
    pfpascal_root: Path
    tss_root: Path
    cub_root: Path
    cache_dir: Path
    results_dir: Path
    pairs_per_category: int
    grid: int
    seed: int
    pca_dim: int
    pca_sweep: tuple[int, ...]
    sd: SDConfig
    dino: DinoConfig
    progress: bool = True

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"

    @cached_property
    def sd_features(self) -> CachedExtractor:
        """SD layers 2/5/8 per image, behind the feature cache."""
        return CachedExtractor(SDFeatureExtractor(self.sd), self.cache_dir, "sd")

    @cached_property
    def projection_features(self) -> CachedExtractor | None:
        """SD features through ODISE's projection heads (supp. Table 2's first row); None without the checkpoint."""
        if not self.sd.captioner_checkpoint:
            return None
        from .features.projection import ProjectedSDExtractor, ProjectionConfig

        extractor = ProjectedSDExtractor(ProjectionConfig(self.sd, self.sd.captioner_checkpoint),
                                         self.sd_features.extractor)
        return CachedExtractor(extractor, self.cache_dir, "sd-projection")

    @cached_property
    def dino_features(self) -> CachedExtractor:
        """DINOv2 block tokens per image, behind the feature cache."""
        return CachedExtractor(DinoFeatureExtractor(self.dino), self.cache_dir, "dino")

    @property
    def derived_dir(self) -> Path:
        """Images the protocol derives from dataset files (TSS padded pairs, CUB crops), cached."""
        return self.cache_dir / "derived"

    def spair_pairs(self, split: str = "test") -> list[Pair]:
        """SPair-71k pairs with this run's sampling (PROTOCOL §7.1)."""
        return load_spair(self.data_root, split=split, pairs_per_category=self.pairs_per_category, seed=self.seed)

    def describe(self) -> dict:
        """The run's settings as plain values (for banners and provenance)."""
        return {"profile": self.profile, "grid": self.grid, "sd_input_px": self.sd.image_size,
                "dino_input_px": self.dino.image_size, "pairs_per_category": self.pairs_per_category,
                "seed": self.seed, "pca_dim": self.pca_dim, "device": self.sd.device, "dtype": self.sd.dtype,
                "sd_model": self.sd.model, "sd_revision": self.sd.revision, "sd_conditioning": self.sd.conditioning,
                "dino_model": self.dino.model, "dino_revision": self.dino.revision,
                "data_root": str(self.data_root), "pfpascal_root": str(self.pfpascal_root),
                "tss_root": str(self.tss_root), "cub_root": str(self.cub_root)}


def _integer(name: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def resolve(profile: str = "smoke", *, data_root=None, pfpascal_root=None, tss_root=None, cub_root=None,
            cache_dir=None, results_dir=None,
            pairs_per_category: int | None = None, grid: int | None = None, device: str | None = None,
            dtype: str | None = None, seed: int = 42, sd_model: str | None = None, dino_model: str | None = None,
            sd_conditioning: str = "empty", captioner_checkpoint: str | None = None,
            dino_blocks: tuple[int, ...] = (9, 11), progress: bool = True) -> Run:
    """A :class:`Run` for ``profile`` with any default overridden; every value is checked before any model loads.

    The smoke profile builds its tiny models and fixture data under ``$SDFUSE_HOME/smoke`` on first use.
    DINOv2 blocks 9 and 11 are both cached by default (one pass; Ensemble-ViT needs block 9).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    defaults = PROFILES[profile]
    grid = defaults["grid"] if grid is None else _integer("grid", grid)
    if grid <= 0:
        raise ConfigError(f"grid G must be positive, got {grid}")
    pairs_per_category = (defaults["pairs_per_category"] if pairs_per_category is None
                          else _integer("pairs_per_category", pairs_per_category))
    if pairs_per_category < 0:
        raise ConfigError(f"pairs_per_category must be >= 0 (0 = all pairs), got {pairs_per_category}")
    device = _device(device or defaults["device"])
    dtype = dtype or defaults["dtype"]
    if profile == "smoke":
        from .smoke import ensure_smoke_assets

        smoke = ensure_smoke_assets(sdfuse_home() / "smoke")
        sd_model = sd_model or str(smoke / "models" / "sd")
        dino_model = dino_model or str(smoke / "models" / "dino")
        base = smoke
        sd_rev = dino_rev = None
    else:
        sd_manifest, dino_manifest = load_manifest("stable-diffusion-v1-5"), load_manifest("dinov2-vitb14")
        sd_rev = None if sd_model else sd_manifest["revision"]
        dino_rev = None if dino_model else dino_manifest["revision"]
        sd_model = sd_model or sd_manifest["model_id"]
        dino_model = dino_model or dino_manifest["model_id"]
        base = data_home()
    sd = SDConfig(model=sd_model, revision=sd_rev, grid=grid, crop=defaults["sd_crop"], dtype=dtype, device=device,
                  conditioning=sd_conditioning, captioner_checkpoint=captioner_checkpoint)
    dino = DinoConfig(model=dino_model, revision=dino_rev, grid=grid, blocks=tuple(dino_blocks), dtype=dtype,
                      device=device)
    return Run(profile=profile, data_root=Path(data_root or base / "SPair-71k").expanduser(),
               pfpascal_root=Path(pfpascal_root or base / "PF-dataset-PASCAL").expanduser(),
               tss_root=Path(tss_root or base / "TSS_CVPR2016").expanduser(),
               cub_root=Path(cub_root or base / "CUB_200_2011").expanduser(),
               cache_dir=Path(cache_dir or sdfuse_home() / "features").expanduser(),
               results_dir=Path(results_dir or Path("results") / profile).expanduser(),
               pairs_per_category=pairs_per_category, grid=grid, seed=seed, pca_dim=defaults["pca_dim"],
               pca_sweep=tuple(defaults["pca_sweep"]), sd=sd, dino=dino, progress=progress)
