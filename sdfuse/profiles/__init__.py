"""A run's configuration: the parameter schema (:mod:`.parameters`), the profiles and the
:class:`~sdfuse.profiles.runs.Run` they resolve to (:mod:`.runs`), and the smoke and rehearsal
assets a run needs (:mod:`.assets`: synthetic datasets, seeded random weights).

``sdfuse.profiles.resolve``, ``Run`` and ``from_notebook`` are re-exported here, imported on first
use so that :mod:`.parameters` stays light for the CLI.
"""
from importlib import import_module

__all__ = ["Run", "from_notebook", "resolve"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(f"{__name__}.runs"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
