"""The layers contract of ``pyproject.toml`` ([tool.importlinter], ARCHITECTURE.md): the library's stages
import downwards only, the protocol imports nothing of the project but ``sdfuse.errors``, and no package
imports the CLI. ``lint-imports`` runs on this tree, and on copies of it with one violating import added,
to show that the contract catches what it claims to."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = {c["id"]: c for c in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``sdfuse`` package under ``root``, with ``root``'s pyproject.toml, no cache."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


def copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package and its pyproject.toml with the import ``line`` appended to ``module``."""
    shutil.copytree(REPO / "sdfuse", tmp_path / "sdfuse", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return tmp_path


def test_the_library_keeps_its_contracts():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    for contract in CONTRACTS.values():
        assert f"{contract['name']} KEPT" in " ".join(done.stdout.split()), done.stdout


def test_the_stages_are_every_package_of_the_library():
    stages = CONTRACTS["stages"]
    assert stages["type"] == "layers" and stages["containers"] == ["sdfuse"] and stages["exhaustive"] is True
    present = {p.stem for p in (REPO / "sdfuse").glob("*.py") if p.stem not in ("__init__", "__main__")}
    present |= {p.name for p in (REPO / "sdfuse").iterdir() if (p / "__init__.py").is_file()}
    assert set(stages["layers"]) == present
    assert stages["layers"][-2:] == ["protocol", "errors"]        # the protocol may import the errors only
    assert len(present) <= 12, "the top level stays a handful of stages (ARCHITECTURE.md)"


@pytest.mark.parametrize("module, line, broken", [
    ("sdfuse/protocol/geometry.py", "from ..data import paths", "stages"),          # protocol imports data
    ("sdfuse/protocol/metrics.py", "import sdfuse.book.pages", "stages"),           # bottom imports the top
    ("sdfuse/data/datasets/spair.py", "from ...features import cache", "stages"),   # data imports features
    ("sdfuse/errors.py", "from .protocol import geometry", "stages"),              # the errors leaf imports
    ("sdfuse/book/viz.py", "from .. import cli", "no-cli"),                        # a package imports the CLI
])
def test_a_violating_import_breaks_the_contract(tmp_path, module, line, broken):
    done = lint_imports(copy_with(tmp_path, module, line))
    out = " ".join(done.stdout.split())
    assert done.returncode == 1, out + done.stderr
    assert f"{CONTRACTS[broken]['name']} BROKEN" in out
    importer = module.removesuffix(".py").replace("/", ".")
    assert importer in out                                              # the report names the offending module


def test_the_old_module_names_still_import_with_a_warning():
    """One release of grace (sdfuse.MOVED): the old name gives the new module, or a merged view of a split one."""
    import sdfuse
    from sdfuse.book import pages, status_page
    from sdfuse.evaluation import outcomes as evaluation_outcomes
    from sdfuse.protocol import geometry, outcomes

    with pytest.warns(DeprecationWarning, match="sdfuse.geometry is now sdfuse.protocol.geometry"):
        from sdfuse.geometry import resize_pad
    assert resize_pad is geometry.resize_pad
    with pytest.warns(DeprecationWarning, match="sdfuse.datasets is now sdfuse.data.datasets"):
        from sdfuse.datasets.spair import load_spair
    assert load_spair is sdfuse.data.datasets.spair.load_spair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sdfuse import report
        import sdfuse.outcomes as old_outcomes
    assert (report.save_results, report.glue_status) == (pages.save_results, status_page.glue_status)
    assert (old_outcomes.outcome_tables, old_outcomes.outcome_records) == (outcomes.outcome_tables,
                                                                           evaluation_outcomes.outcome_records)
    assert sdfuse.pck_table is sdfuse.protocol.metrics.pck_table and sdfuse.resolve is sdfuse.profiles.runs.resolve
