"""Shared fixtures: one smoke home per test session (tiny models and synthetic data, built once)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):   # make test: one pytest-xdist worker per core, one BLAS thread per worker
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)


BOOK_FILES = {"test_book.py", "test_browser.py", "test_reliability_reproduce.py"}
"""The test files that use the session's built book (:func:`built_book`): one worker runs them all."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """make test's pytest-xdist schedule: each test file on one worker (its module fixtures built once),
    the files of :data:`BOOK_FILES` on the same one (the book built once). pytest 9 ignores the node-id
    suffix by which xdist 3.8's own ``--dist loadgroup`` groups, hence a scheduler of our own."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "book" if Path(path).name in BOOK_FILES else path

    return ByFile(config, log)


def pytest_collection_modifyitems(config, items):
    """A test that uses the built book outside :data:`BOOK_FILES` would build it on a second worker.
    Under ``make mutate`` a mutant's tests run fastest first (:func:`_fastest_first`)."""
    stray = sorted({item.path.name for item in items if "built_book" in getattr(item, "fixturenames", ())}
                   - BOOK_FILES)
    if stray:
        raise pytest.UsageError(f"{stray} use built_book: add them to BOOK_FILES in tests/conftest.py")
    if "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", ""):
        items[:] = _fastest_first(items, Path("mutmut-stats.json"))


def _fastest_first(items: list, stats: Path) -> list:
    """The tests of one mutant, by the durations mutmut measured (its ``mutmut-stats.json``), fastest first:
    mutmut stops at the first failure, so a killed mutant costs its fastest killing test, not its slowest."""
    import json

    try:
        duration = json.loads(stats.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return items
    return sorted(items, key=lambda item: duration.get(item.nodeid, float("inf")))


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
    """The smoke assets: models/sd (diffusers), models/dino (timm), SPair-71k (synthetic).

    Built once per session, except when ``$SDFUSE_TEST_SMOKE_ASSETS`` names a folder that
    ``sdfuse.profiles.assets.ensure_assets("smoke", ...)`` built: ``make mutate`` builds it once, so that each
    mutant's test session (a fresh session per mutant) does not rebuild the models. Only the
    read-only assets are shared; the feature cache stays per session.
    """
    from sdfuse.profiles.assets import ensure_assets

    prebuilt = os.environ.get("SDFUSE_TEST_SMOKE_ASSETS")
    if prebuilt:
        (sdfuse_home / "smoke").symlink_to(Path(prebuilt).resolve(), target_is_directory=True)
    return ensure_assets("smoke", sdfuse_home / "smoke")


@pytest.fixture(scope="session")
def built_book(smoke_root, tmp_path_factory) -> Path:
    """A copy of the book's sources with every notebook run on the smoke profile and the HTML built
    strictly (``jupyter-book build -W -n --keep-going``); fails with the build log if it does not pass."""
    import shutil
    import subprocess
    import sys

    from sdfuse.profiles.parameters import NOTEBOOKS
    from sdfuse.book.runner import SUMMARY_NOTEBOOKS, reproduce

    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("tables"))
    runs = reproduce("smoke", root=root)
    expected = [(name, "ok") for name in NOTEBOOKS] + [(name, "ok") for name in SUMMARY_NOTEBOOKS]
    assert [(r.name, r.status) for r in runs] == expected, runs
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return root
