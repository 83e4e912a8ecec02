"""Profiles: named parameter defaults, the only thing a notebook needs to know (DESIGN "Profiles").

``smoke`` runs tiny random models on synthetic data on the CPU in seconds; its numbers test the
machinery, not the paper. ``rehearsal`` runs the paper's exact settings on the real architectures
with seeded random weights and synthetic data at real image sizes: it proves the paper path
(loading, shapes, memory, time), its numbers mean nothing. ``paper`` uses SD v1.5 and DINOv2
ViT-B/14 with real weights on the real datasets at G = 60. The parameters and their checks are
:data:`sdfuse.profiles.parameters.RUN_PARAMETERS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..data.datasets import Pair, load_spair
from ..data.manifests import load_manifest
from ..data.paths import data_home, display_path, sdfuse_home
from ..features.cache import CachedExtractor
from ..features.dino import DinoConfig, DinoFeatureExtractor
from ..features.sd import SDConfig, SDFeatureExtractor
from .parameters import PROFILES, RUN_PARAMETERS, check_notebook_values, check_together, check_values


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

    @property
    def is_rehearsal(self) -> bool:
        return self.profile == "rehearsal"

    @cached_property
    def sd_features(self) -> CachedExtractor:
        """SD layers 2/5/8 per image, behind the feature cache."""
        return CachedExtractor(SDFeatureExtractor(self.sd), self.cache_dir, "sd")

    @cached_property
    def projection_features(self) -> CachedExtractor | None:
        """SD features through ODISE's projection heads (supp. Table 2's first row); None without the checkpoint."""
        if not self.sd.captioner_checkpoint:
            return None
        from ..features.projection import ProjectedSDExtractor, ProjectionConfig

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
        """The run's settings as plain values (for banners and provenance), paths in their display form
        (:func:`sdfuse.data.paths.display_path`)."""
        return {"profile": self.profile, "grid": self.grid, "sd_input_px": self.sd.image_size,
                "dino_input_px": self.dino.image_size, "pairs_per_category": self.pairs_per_category,
                "seed": self.seed, "pca_dim": self.pca_dim, "device": self.sd.device, "dtype": self.sd.dtype,
                "sd_model": display_path(self.sd.model), "sd_revision": self.sd.revision,
                "sd_conditioning": self.sd.conditioning, "timestep": self.sd.timestep, "dino_blocks": list(self.dino.blocks),
                "dino_model": display_path(self.dino.model), "dino_revision": self.dino.revision,
                "data_root": display_path(self.data_root), "pfpascal_root": display_path(self.pfpascal_root),
                "tss_root": display_path(self.tss_root), "cub_root": display_path(self.cub_root)}


def resolve(profile: str = "smoke", *, progress: bool = True, **overrides) -> Run:
    """A :class:`Run` for ``profile`` with any default overridden; every value is checked before any model loads.

    ``overrides`` are the run parameters of :data:`sdfuse.profiles.parameters.RUN_PARAMETERS` (the same names
    as ``-p`` on the command line and in every notebook's parameters cell); None keeps the profile's
    default. The smoke and rehearsal profiles build their models and fixture data under
    ``$SDFUSE_HOME/<profile>`` on first use (:func:`sdfuse.profiles.assets.ensure_assets`). DINOv2 blocks 9
    and 11 are both cached by default (one pass; Ensemble-ViT needs block 9).
    """
    values = check_values({"profile": profile, **overrides})
    given = {name: value for name, value in values.items() if value is not None}
    value = {p.name: given.get(p.name, p.default) for p in RUN_PARAMETERS}
    defaults = PROFILES[value["profile"]]
    profile = value["profile"]
    grid = value["grid"] or defaults["grid"]
    pairs_per_category = defaults["pairs_per_category"] if value["pairs_per_category"] is None \
        else value["pairs_per_category"]
    device = _device(value["device"] or defaults["device"])
    checkpoint = value["captioner_checkpoint"]
    sd_model, dino_model = value["sd_model"], value["dino_model"]
    sd_rev, dino_rev = value["sd_revision"], value["dino_revision"]
    if profile in ("smoke", "rehearsal"):
        from .assets import ensure_assets

        base = ensure_assets(profile, sdfuse_home() / profile)
        sd_model = sd_model or str(base / "models" / "sd")
        dino_model = dino_model or str(base / "models" / "dino")
    else:
        sd_manifest, dino_manifest = load_manifest("stable-diffusion-v1-5"), load_manifest("dinov2-vitb14")
        sd_rev = sd_rev or (None if sd_model else sd_manifest["revision"])
        dino_rev = dino_rev or (None if dino_model else dino_manifest["revision"])
        sd_model = sd_model or sd_manifest["model_id"]
        dino_model = dino_model or dino_manifest["model_id"]
        base = data_home()
    sd = SDConfig(model=sd_model, revision=sd_rev, grid=grid, crop=defaults["sd_crop"],
                  dtype=value["dtype"] or defaults["dtype"], device=device, timestep=value["timestep"],
                  conditioning=value["sd_conditioning"], captioner_checkpoint=checkpoint)
    dino = DinoConfig(model=dino_model, revision=dino_rev, grid=grid, blocks=tuple(value["dino_blocks"]),
                      dtype=sd.dtype, device=device)

    def folder(name: str, default: Path) -> Path:
        return Path(value[name] or default).expanduser()

    return Run(profile=profile, data_root=folder("data_root", base / "SPair-71k"),
               pfpascal_root=folder("pfpascal_root", base / "PF-dataset-PASCAL"),
               tss_root=folder("tss_root", base / "TSS_CVPR2016"), cub_root=folder("cub_root", base / "CUB_200_2011"),
               cache_dir=folder("cache_dir", sdfuse_home() / "features"),
               results_dir=folder("results_dir", Path("results") / profile),
               pairs_per_category=pairs_per_category, grid=grid, seed=value["seed"], pca_dim=defaults["pca_dim"],
               pca_sweep=tuple(defaults["pca_sweep"]), sd=sd, dino=dino, progress=progress)


resolve.__doc__ += "\n    Run parameters:\n\n" + "\n".join(
    f"    - ``{p.name}`` (default {p.default!r}): {p.help}" for p in RUN_PARAMETERS)


def from_notebook(namespace: dict, progress: bool = False) -> Run:
    """The :class:`Run` of a notebook: every run parameter read from its namespace (the generated
    block of its parameters cell, as papermill left it).

    The notebook's own parameters (:data:`sdfuse.profiles.parameters.NOTEBOOK_PARAMETERS`) are checked too, with
    what they need of the run (:func:`~sdfuse.profiles.parameters.check_together`), and written back to the
    namespace converted (``-p cub_classes 1,2`` from papermill becomes ``[1, 2]``).
    """
    own = check_notebook_values(namespace)
    run = resolve(**{p.name: namespace[p.name] for p in RUN_PARAMETERS}, progress=progress)
    check_together({"dino_blocks": list(run.dino.blocks), **own}, run.grid)
    namespace.update(own)
    return run
