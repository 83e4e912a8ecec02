"""Publishing: the GitHub Actions workflow that builds the book and deploys it to GitHub Pages, and the
book's repository and launch-button settings.

The workflow is checked against the GitHub workflow schema that check-jsonschema ships (SchemaStore's,
vendored in the package, so no network), then for what it must do. actionlint is not used: its PyPI
package builds by downloading the binary from GitHub, which this project's machines cannot reach.
"""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
REPOSITORY = "https://github.com/sdfuse/sdfuse"


def _schema_check(path: Path) -> subprocess.CompletedProcess:
    checker = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(checker), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_workflow_follows_the_github_workflow_schema():
    done = _schema_check(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("breakage", [("runs-on:", "runs_on:"), ("uses: actions/deploy-pages@v4", "uses: 4"),
                                      ("  pages: write", "  pages: publish")])
def test_the_schema_check_refuses_a_broken_workflow(breakage, tmp_path):
    text = WORKFLOW.read_text()
    assert breakage[0] in text
    broken = tmp_path / "book.yml"
    broken.write_text(text.replace(breakage[0], breakage[1], 1))
    assert _schema_check(broken).returncode != 0


def test_the_workflow_builds_with_make_book_and_deploys_the_html_to_pages():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert workflow[True]["push"]["branches"] == ["main"] and "workflow_dispatch" in workflow[True]   # YAML 1.1: on
    runs = [step["run"] for step in build["steps"] if "run" in step]
    assert runs == ["make book"]
    uses = {step["uses"].split("@")[0]: step for step in build["steps"] if "uses" in step}
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert {"actions/checkout", "actions/setup-python"} <= set(uses)
    assert uses["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert [step["uses"].split("@")[0] for step in deploy["steps"]] == ["actions/deploy-pages"]


def test_the_repository_is_named_the_same_everywhere():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"] == {"url": REPOSITORY, "path_to_book": "", "branch": "main"}
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == REPOSITORY
    owner, name = REPOSITORY.removeprefix("https://github.com/").split("/")
    assert urls["Documentation"] == f"https://{owner}.github.io/{name}/"
