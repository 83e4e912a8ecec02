"""environment.yml repeats pyproject.toml's pins exactly."""
import tomllib

import yaml
from packaging.requirements import Requirement

from .conftest import ROOT


def _pins(requirements):
    return {Requirement(r).name.lower().replace("_", "-"): str(Requirement(r).specifier) for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = _pins(project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(p for p in pip_block if not p.startswith("-")) == want
    assert all("==" in spec for spec in want.values())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.split("=")[1] == project["requires-python"].removeprefix(">=")
