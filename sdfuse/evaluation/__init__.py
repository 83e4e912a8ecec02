"""Evaluation: cached features of a pair → descriptors of every method (:mod:`.pair_features`) →
keypoint records (:mod:`.keypoints`, :mod:`.outcomes`) or dense TSS flow (:mod:`.tss`); the
records written beside every results CSV (:mod:`.records`).

The names of the former ``sdfuse.evaluation`` module (``Method``, ``pair_features``, ``evaluate``, …)
are re-exported here, imported on first use.
"""
from importlib import import_module

_NAMES = {**dict.fromkeys(["Method", "PairFeatures", "pair_features", "pair_keypoints", "REFERENCE_SUM_BUG"],
                          "pair_features"), "evaluate": "keypoints"}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
