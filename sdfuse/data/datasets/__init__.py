"""Benchmark loaders. Every loader returns a list of :class:`~sdfuse.data.datasets.pairs.Pair`."""
from .pairs import Pair
from .spair import load_spair

__all__ = ["Pair", "load_spair"]
