"""Wall time of ``sdfuse reproduce --profile smoke`` on a temporary copy of the book sources.

``SDFUSE_HOME`` points at an empty temporary folder, so the cold run includes building the smoke
assets (tiny models, synthetic datasets) and extracting every feature; the warm run repeats the
same command with the assets and the feature cache in place.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATUS = re.compile(r"^(ok|failed)\s+(\S+)\s+\(([\d.]+) s\)", re.M)


def _reproduce(root: Path, home: Path, timeout: int) -> dict:
    sdfuse = Path(sys.executable).parent / "sdfuse"
    command = [str(sdfuse), "reproduce", "--profile", "smoke", "--root", str(root)]
    env = dict(os.environ, SDFUSE_HOME=str(home), HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - start
    notebooks = [{"status": m[0], "notebook": m[1], "wall_s": float(m[2])} for m in STATUS.findall(proc.stdout)]
    return {"wall_s": round(wall, 1), "exit_code": proc.returncode, "notebooks": notebooks,
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def run(timeout: int = 900) -> dict:
    with tempfile.TemporaryDirectory(prefix="sdfuse-bench-e2e-") as tmp:
        root, home = Path(tmp) / "root", Path(tmp) / "home"
        root.mkdir()
        for name in ("_config.yml", "_toc.yml"):
            shutil.copy(ROOT / name, root / name)
        shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("tables"))
        cold = _reproduce(root, home, timeout)
        warm = _reproduce(root, home, timeout)
    return {"command": "sdfuse reproduce --profile smoke --root <temp copy of _config.yml, _toc.yml, book/>",
            "cold": cold, "warm": warm,
            "note": "cold: empty SDFUSE_HOME (builds the smoke assets, extracts all features); warm: same "
                    "command again with assets and cache in place. Most of the time is papermill/kernel start-up."}
