"""The protocol's arithmetic (PROTOCOL §1–§10): pure functions of arrays and tensors.

Geometry of resize-with-padding and the patch grid (:mod:`.geometry`), co-PCA and fusion
(:mod:`.fusion`), nearest-neighbour matching (:mod:`.matching`), PCK and its aggregates
(:mod:`.metrics`) with bootstrap intervals (:mod:`.bootstrap`), the TSS flow and its PCK
(:mod:`.flow`), the outcome classes and relative distances (:mod:`.outcomes`) and the DINOv2
variants' filter (:mod:`.dino_variants`). Nothing here reads a file, loads a model or imports
another part of sdfuse except :mod:`sdfuse.errors` (the import-linter contract in pyproject.toml).
"""
