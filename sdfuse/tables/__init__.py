"""The tables: one module per supplementary table, each function returning a tidy DataFrame.

``sdfuse.tables.table1(run)`` … are re-exported here (imported on first use, so importing
:mod:`sdfuse.tables.paper` stays cheap); the modules are :mod:`.unet_layers` (Table 1),
:mod:`.reduction` (Table 2, with :mod:`.co_pca_randomness`), :mod:`.fusion_strategy` (Table 3),
:mod:`.fusion_weight` (Fig. 1's α sweep), :mod:`.dino_variants` (Table 5), :mod:`.outcome_analysis`
(Tables 6, 7, Fig. 2), :mod:`.cub200` (Table 8), :mod:`.precision` (fp32 against bf16), the
paper's numbers :mod:`.paper`, and what they share, :mod:`.common`.
"""
from importlib import import_module

_TABLES = {"table1": "unet_layers", "table2": "reduction", "table3": "fusion_strategy", "alpha_sweep": "fusion_weight",
           "table5": "dino_variants", "table5_methods": "dino_variants", "table5_headline": "dino_variants",
           "outcomes": "outcome_analysis", "table8": "cub200", "spair_pairs_with_features": "common"}
__all__ = sorted(_TABLES)


def __getattr__(name: str):
    if name in _TABLES:
        return getattr(import_module(f"{__name__}.{_TABLES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
