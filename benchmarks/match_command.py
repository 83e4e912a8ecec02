"""Wall time of ``sdfuse match`` at G = 60 on the CPU: a first call (empty feature cache) and repeated ones.

Profile: ``rehearsal`` (the real SD v1.5 and DINOv2 ViT-B/14 architectures with random weights) when
:data:`sdfuse.profiles.parameters.PROFILES` has it, else ``smoke`` (the output says which). The images are two
that matplotlib ships (the Grace Hopper photograph, 512×600, and the present, 128×128). Every call
is a fresh process, ``sdfuse match A B --profile P -p grid=60 -p device='cpu' --out …``, so it
includes Python start-up, imports and model loading as a user sees them; the profile's assets (if it
builds any) are made before timing. The first call extracts both images; the repeated calls find
their features in the per-image cache and load no model.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

GRID = 60
SAMPLE = Path(matplotlib.get_data_path()) / "sample_data"
IMAGES = (SAMPLE / "grace_hopper.jpg", SAMPLE / "Minduka_Present_Blue_Pack.png")


def profile_to_time() -> str:
    """``rehearsal`` when the profiles have it, else ``smoke``."""
    from sdfuse.profiles.runs import PROFILES

    return "rehearsal" if "rehearsal" in PROFILES else "smoke"


def _match(profile: str, cache: Path, out: Path, extra: list[str], timeout: int) -> dict:
    command = [sys.executable, "-m", "sdfuse.cli", "match", *map(str, IMAGES), "--profile", profile,
               "-p", f"grid={GRID}", "-p", "device='cpu'", "-p", f"cache_dir='{cache}'", "--out", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    return {"wall_s": round(time.perf_counter() - start, 2), "exit_code": proc.returncode,
            "points": max(len(proc.stdout.strip().splitlines()) - 1, 0),
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def run(workdir: Path, repeats: int = 2, timeout: int = 1800) -> dict:
    from sdfuse.profiles.runs import resolve

    profile = profile_to_time()
    resolve(profile, grid=GRID, device="cpu", progress=False)            # builds the profile's assets, untimed
    cache, out = workdir / "cache", workdir / "match.png"
    first = _match(profile, cache, out, [], timeout)
    repeated = [_match(profile, cache, out, [], timeout) for _ in range(repeats)]
    dense = _match(profile, cache, out, ["--dense"], timeout)
    best = min(repeated, key=lambda r: r["wall_s"])
    return {"profile": profile, "grid": GRID, "device": "cpu", "images": [p.name for p in IMAGES],
            "command": f"sdfuse match grace_hopper.jpg Minduka_Present_Blue_Pack.png --profile {profile} "
                       f"-p grid={GRID} -p device='cpu' (4×4 lattice of points)",
            "first": first, "repeated": best, "repeated_runs_s": [r["wall_s"] for r in repeated],
            "repeated_dense": dense,
            "note": ("rehearsal: real architectures, random weights" if profile == "rehearsal" else
                     "the rehearsal profile does not exist here: measured with the smoke profile's tiny models "
                     "at G = 60, so the first call is far cheaper than with the real architectures")}
