"""The YAML manifests of ``data_manifests/``: where datasets and weights come from."""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "data_manifests"


def load_manifest(name: str) -> dict:
    """The manifest ``data_manifests/<name>.yaml`` as a dict."""
    return yaml.safe_load((MANIFEST_DIR / f"{name}.yaml").read_text())


def manifest_digests() -> dict[str, str]:
    """sha256 of every manifest file, for provenance."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(MANIFEST_DIR.glob("*.yaml"))}
