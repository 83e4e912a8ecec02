"""sdfuse: Stable Diffusion + DINOv2 features for zero-shot semantic correspondence, reproduced.

Your own images, in one call each (:mod:`sdfuse.api`; imported on first use, so ``import sdfuse``
stays cheap):

- ``sdfuse.match(a, b, points, **run_options)``: where the (x, y) points of image a land in image b
- ``sdfuse.describe(image, **run_options)``: the fused G×G×D descriptor map of one image

The public API, module by module (each function cites the PROTOCOL section it follows):

- :mod:`sdfuse.geometry`: ``resize_pad``, ``map_keypoints``, ``pixel_to_patch``, ``patch_to_pixel``
- :mod:`sdfuse.features.sd`: ``SDConfig``, ``SDFeatureExtractor`` (paper layers 2, 5, 8)
- :mod:`sdfuse.features.dino`: ``DinoConfig``, ``DinoFeatureExtractor`` (DINOv2 block tokens)
- :mod:`sdfuse.features.cache`: ``CachedExtractor`` (per-image, content-addressed)
- :mod:`sdfuse.fusion`: ``co_pca``, ``co_pca_layers``, ``assemble_sd``, ``fuse``
- :mod:`sdfuse.matching`: ``nearest_patches``, ``match_keypoints``
- :mod:`sdfuse.metrics`: ``correct``, ``per_category``, ``aggregates``, ``table_aggregates``, ``pck_table``
- :mod:`sdfuse.bootstrap`: ``stratified_sums``, ``interval`` (pairs resampled within categories)
- :mod:`sdfuse.records`: the per-keypoint records written next to every results CSV, ``read_records``
- :mod:`sdfuse.datasets`: ``Pair``, ``load_spair``
- :mod:`sdfuse.tables`: one function per supplementary table; :mod:`sdfuse.profiles`: ``resolve``
"""

__version__ = "0.1.0"
__all__ = ["match", "describe", "__version__"]
_LAZY = {"match", "describe"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sdfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
