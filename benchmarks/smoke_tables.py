"""The whole smoke supplement's evaluation time: every table function on a warm feature cache.

One pass calls, in this process, :mod:`sdfuse.tables`' ``table1``, ``table2``, ``table3``,
``alpha_sweep``, ``outcomes``, ``table5`` and ``table8`` and the Table 2 page's
:func:`sdfuse.tables.co_pca_randomness.seed_spread` on the smoke profile: no notebook kernel start-up, no
rendering, no backbone forwards (a first, untimed pass fills the cache). Each timed pass resolves a
fresh run on that cache, so features come from disk as in a notebook, and is timed as a whole and per
table; any change in the per-pair path (co-PCA, similarities, records, PCK) shows in it.
"""
from __future__ import annotations

import time
from pathlib import Path

from .common import CpuTally, thread_settings

TABLES = ("table1", "table2", "table3", "alpha_sweep", "outcomes", "table5", "table8", "seed_spread")


def _one_pass(cache: Path) -> dict[str, float]:
    from sdfuse.tables import co_pca_randomness
    from sdfuse import tables
    from sdfuse.profiles.runs import resolve

    run = resolve("smoke", cache_dir=cache, progress=False)
    seconds = {}
    for name in TABLES:
        fn = co_pca_randomness.seed_spread if name == "seed_spread" else getattr(tables, name)
        start = time.perf_counter()
        fn(run)
        seconds[name] = time.perf_counter() - start
    return seconds


def run(workdir: Path, reps: int = 3) -> dict:
    from .matching import stats

    cache = workdir / "cache"
    start = time.perf_counter()
    _one_pass(cache)                                      # extraction: fills the cache, not timed
    warm_up = time.perf_counter() - start
    passes, tally = [], CpuTally()
    for _ in range(reps):
        with tally:
            passes.append(_one_pass(cache))
    totals = stats([sum(p.values()) for p in passes])
    return {"method": f"{', '.join(TABLES)} on the smoke profile, warm cache, {reps} passes, each on a fresh run",
            "reps": reps, "threads": thread_settings(), "cold_first_pass_s": round(warm_up, 2),
            "total_s": {**totals, "cpu": tally.as_dict()},
            "per_table_s": {name: stats([p[name] for p in passes]) for name in TABLES},
            "noisy": totals["noisy"]}
