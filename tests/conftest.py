"""Shared fixtures: one smoke home per test session (tiny models and synthetic data, built once)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def sdfuse_home(tmp_path_factory) -> Path:
    """Point SDFUSE_HOME at a fresh session folder so tests never touch the user's cache."""
    home = tmp_path_factory.mktemp("sdfuse_home")
    old = os.environ.get("SDFUSE_HOME")
    os.environ["SDFUSE_HOME"] = str(home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield home
    if old is None:
        os.environ.pop("SDFUSE_HOME", None)
    else:
        os.environ["SDFUSE_HOME"] = old


@pytest.fixture(scope="session")
def smoke_root(sdfuse_home) -> Path:
    """The smoke assets: models/sd (diffusers), models/dino (timm), SPair-71k (synthetic)."""
    from sdfuse.smoke import ensure_smoke_assets

    return ensure_smoke_assets(sdfuse_home / "smoke")
