"""sdfuse: Stable Diffusion + DINOv2 features for zero-shot semantic correspondence, reproduced.

Your own images, in one call each (:mod:`sdfuse.api`; imported on first use, so ``import sdfuse``
stays cheap):

- ``sdfuse.match(a, b, points, **run_options)``: where the (x, y) points of image a land in image b
- ``sdfuse.describe(image, **run_options)``: the fused G×G×D descriptor map of one image

The library is grouped by the stages of the data flow (``ARCHITECTURE.md``; each layer imports only
the layers below it, checked by the import-linter contract in ``pyproject.toml``):
:mod:`sdfuse.protocol` (the protocol's arithmetic) ← :mod:`sdfuse.data` (loaders, manifests, files)
← :mod:`sdfuse.features` (backbones, cache) ← :mod:`sdfuse.profiles` (parameters, profiles, ``Run``)
← :mod:`sdfuse.evaluation` (pair features, records) ← :mod:`sdfuse.tables` (one module per table)
← :mod:`sdfuse.book` (what the notebooks show) ← :mod:`sdfuse.api`, :mod:`sdfuse.cli`.

The public names, re-exported here on first use (each function cites the PROTOCOL section it follows):
``resize_pad``, ``map_keypoints``, ``pixel_to_patch``, ``patch_to_pixel`` (:mod:`sdfuse.protocol.geometry`);
``co_pca``, ``co_pca_layers``, ``assemble_sd``, ``fuse`` (:mod:`sdfuse.protocol.fusion`);
``nearest_patches``, ``match_keypoints`` (:mod:`sdfuse.protocol.matching`); ``correct``, ``per_category``,
``aggregates``, ``table_aggregates``, ``pck_table`` (:mod:`sdfuse.protocol.metrics`); ``stratified_sums``,
``interval`` (:mod:`sdfuse.protocol.bootstrap`); ``BilateralFilter`` (:mod:`sdfuse.protocol.dino_variants`);
``Pair``, ``load_spair`` (:mod:`sdfuse.data.datasets`); ``SDConfig``, ``SDFeatureExtractor``
(:mod:`sdfuse.features.sd`, paper layers 2, 5, 8); ``DinoConfig``, ``DinoFeatureExtractor``
(:mod:`sdfuse.features.dino`); ``CachedExtractor`` (:mod:`sdfuse.features.cache`); ``resolve``, ``Run``
(:mod:`sdfuse.profiles`); ``ensure_assets`` (:mod:`sdfuse.profiles.assets`); ``read_records``
(:mod:`sdfuse.evaluation.records`); ``precision_parity`` (:mod:`sdfuse.tables.precision`).

The modules' names before the stage packages (``sdfuse.geometry``, ``sdfuse.report``, …) still
import, with a DeprecationWarning, for one release (:data:`MOVED`).
"""
import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__version__ = "0.1.0"
_LAZY = {"match": "api", "describe": "api",
         **dict.fromkeys(["resize_pad", "map_keypoints", "pixel_to_patch", "patch_to_pixel"], "protocol.geometry"),
         **dict.fromkeys(["co_pca", "co_pca_layers", "assemble_sd", "fuse"], "protocol.fusion"),
         **dict.fromkeys(["nearest_patches", "match_keypoints"], "protocol.matching"),
         **dict.fromkeys(["correct", "per_category", "aggregates", "table_aggregates", "pck_table"],
                         "protocol.metrics"),
         **dict.fromkeys(["stratified_sums", "interval"], "protocol.bootstrap"),
         "BilateralFilter": "protocol.dino_variants", "Pair": "data.datasets", "load_spair": "data.datasets",
         "SDConfig": "features.sd", "SDFeatureExtractor": "features.sd", "DinoConfig": "features.dino",
         "DinoFeatureExtractor": "features.dino", "CachedExtractor": "features.cache", "resolve": "profiles",
         "Run": "profiles", "ensure_assets": "profiles.assets", "read_records": "evaluation.records",
         "precision_parity": "tables.precision"}
__all__ = sorted(_LAZY) + ["__version__"]

_STAGES = {"protocol": "geometry fusion matching metrics bootstrap dino_variants",
           "data": "datasets manifests download datalock datastore archives images storage paths",
           "features": "shard", "profiles": "parameters assets", "evaluation": "records",
           "tables": "paper precision co_pca_randomness",
           "book": "status provenance runner run_record bundle launch_buttons viz quality reliability"}
MOVED = {f"sdfuse.{name}": (f"sdfuse.{stage}.{name}",) for stage, names in _STAGES.items() for name in names.split()}
MOVED |= {"sdfuse.dense": ("sdfuse.evaluation.tss",),
          "sdfuse.outcomes": ("sdfuse.protocol.outcomes", "sdfuse.evaluation.outcomes"),
          "sdfuse.report": tuple(f"sdfuse.book.{name}" for name in ("pages", "figures", "alpha_sweep_page",
                                                                "outcomes_page", "table5_page", "status_page",
                                                                "run_page"))}
"""Old module name → the module(s) that now hold its names (several when the old module was split)."""


def _moved(old: str) -> types.ModuleType:
    """The module now holding ``old``'s names (a merged view of them when ``old`` was split), with a warning
    attributed to the caller's import."""
    new = MOVED[old]
    warnings.warn(f"{old} is now {' and '.join(new)}; the old name goes in the next release", DeprecationWarning,
                  stacklevel=3)
    if len(new) == 1:
        return importlib.import_module(new[0])
    merged = types.ModuleType(old, f"{old}, moved: the names of {', '.join(new)}")
    for name in new:
        merged.__dict__.update({k: v for k, v in vars(importlib.import_module(name)).items() if not k.startswith("__")})
    return sys.modules.setdefault(old, merged)


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Lets ``import sdfuse.geometry`` (and ``sdfuse.datasets.spair``) import the module's new home."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED or fullname.startswith("sdfuse.datasets."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        if spec.name in MOVED:
            return _moved(spec.name)
        return importlib.import_module(spec.name.replace("sdfuse.datasets.", "sdfuse.data.datasets.", 1))

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _MovedFinder())


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if f"{__name__}.{name}" in MOVED:
        globals()[name] = _moved(f"{__name__}.{name}")
        return globals()[name]
    raise AttributeError(f"module 'sdfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
