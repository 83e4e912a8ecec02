"""Provenance of a run: code version, packages, hardware, settings, data manifests, date."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..data.manifests import manifest_digests
from ..data.paths import REPO

PACKAGES = ("sdfuse", "torch", "torchvision", "diffusers", "timm", "transformers", "numpy", "pandas",
            "pillow", "safetensors", "papermill", "jupyter-book")


def git_state(repo: Path = REPO) -> dict:
    """Commit hash and whether the work tree has uncommitted changes (None outside a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def device_name(device: str) -> str:
    """GPU model for CUDA devices, else the CPU model."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(settings: dict) -> dict:
    """Provenance record: settings, git state, versions, Python, device name, manifest digests, UTC date."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        **settings,
        **git_state(),
        "device_name": device_name(settings.get("device", "cpu")),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "data_manifests_sha256": manifest_digests(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
