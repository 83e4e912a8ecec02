"""Documented means working: every command and every ``-p key=value`` in the README, the book's pages
and the benchmark README is accepted.

Commands are taken from fenced code blocks (one per line, comments dropped) and from inline code
spans; placeholders (``<name>``, ``…``, ``/path/…``) are replaced by real files or names. Each is then
checked the way a user would run it, without real data: ``sdfuse reproduce`` and ``sdfuse extract``
with ``--dry-run`` (every parameter checked, nothing run), the other ``sdfuse`` commands by the
argument parser and the manifests, ``make`` targets with ``make -n``, ``papermill`` runs against the
notebook's declared parameters, ``python -m benchmarks.*`` by their own parsers.
"""
from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from sdfuse.book.runner import notebook_parameters
from sdfuse.cli import build_parser, main
from sdfuse.profiles import parameters
from sdfuse.profiles.parameters import NOTEBOOK_DIR

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "benchmarks/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "book").glob("*.md"))]
COMMAND = re.compile(r"^(?:\.venv/bin/)?(?:(?:sdfuse|make|papermill|torchrun|jupyter-book) [a-z-]|python -m [\w.]+(?:\s|$))")
EXTERNAL = ("jupyter-book build", "huggingface-cli download")


def _texts() -> list[tuple[str, str]]:
    """(source, markdown) of every documented page: the Markdown files and the notebooks' markdown cells."""
    texts = [(name, (ROOT / name).read_text()) for name in DOCUMENTS]
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        texts.append((path.name, "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    return texts


def _snippets(text: str) -> list[str]:
    """Lines of fenced code blocks (comments dropped) and inline code spans (whitespace collapsed)."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        out += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    out += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return out


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for source, text in _texts():
        for snippet in _snippets(text):
            if COMMAND.match(snippet):
                found.append((source, snippet))
    return found


def documented_assignments() -> list[tuple[str, str, str]]:
    """(source, key, value) of every ``-p key=value`` written anywhere in the documents."""
    found = []
    for source, text in _texts():
        for key, value in re.findall(r"-p\s+(\w+)=(\S+?)[`,)]?(?=\s|`|$)", text):
            if (key, value) != ("key", "value"):                      # the syntax itself, named in prose
                found.append((source, key, value.rstrip("`.,)")))
    return found


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory):
    """Real stand-ins for the documents' placeholders: a file for file paths, a folder for folders."""
    root = tmp_path_factory.mktemp("placeholders")
    checkpoint = root / "odise_label_coco_50e-b67d2efc.pth"
    checkpoint.write_bytes(b"stand-in")
    return {"file": str(checkpoint), "folder": str(root)}


def _substitute(words: list[str], stand_in: dict) -> list[str]:
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep and (value.startswith("/path") or value.startswith("/other")):
            kind = parameters.BY_NAME.get(key)
            word = f"{key}={stand_in['folder'] if kind is None or kind.folder else stand_in['file']}"
        elif word in ("…", "...") or word.startswith("<temp"):
            word = stand_in["folder"]
        elif word == "<name>":
            word = "spair71k"
        out.append(word)
    return out


def _words(command: str) -> list[str]:
    command = re.sub(r"<temp copy of the book sources>", "<temp>", command)
    return shlex.split(command.removeprefix(".venv/bin/"))


def check_command(command: str, stand_in: dict, capsys) -> None:
    """Assert that a documented command is accepted (see the module docstring)."""
    words = _substitute(_words(command), stand_in)
    if words[0] == "torchrun":
        words = ["sdfuse"] + words[words.index("sdfuse.cli") + 1:]
    if words[0] == "sdfuse":
        args = words[1:]
        if args[:1] in (["reproduce"], ["extract"]):
            assert main(args + ["--dry-run"]) == 0, capsys.readouterr().err
        elif args == ["data"]:                                     # the command group, named in prose
            assert "data" in build_parser()._subparsers._group_actions[0].choices
        else:
            build_parser().parse_args(args)                       # SystemExit(2) when refused
            if args[:2] in (["data", "fetch"], ["data", "verify"]):
                from sdfuse.data.manifests import load_manifest
                load_manifest(args[2])
    elif words[0] == "make":
        target = [w for w in words[1:] if "=" not in w]
        variables = [w for w in words[1:] if "=" in w]
        done = subprocess.run(["make", "-n", *target, *variables], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for variable in variables:
            if variable.startswith("BENCH_ARGS="):
                from benchmarks.run import build_parser as bench_parser
                bench_parser().parse_args(variable.split("=", 1)[1].split())
    elif words[:2] == ["papermill", "--help-notebook"]:
        assert notebook_parameters(Path(words[2]).stem) >= set(parameters.BY_NAME)
    elif words[0] == "papermill":
        notebook = ROOT / words[1]
        declared = notebook_parameters(notebook.stem)
        pairs = [(words[i + 1], words[i + 2]) for i, w in enumerate(words) if w in ("-p", "--parameters")]
        assert pairs, command
        for key, value in pairs:
            assert key in declared, f"{notebook.name} has no parameter {key!r}"
            if key in parameters.BY_NAME:
                parameters.check_values({key: parameters.parse_assignment(f"{key}={value}")[1]})
    elif words[:2] == ["python", "-m"] and words[2].startswith("benchmarks."):
        importlib.import_module(words[2]).build_parser().parse_args(words[3:])
    elif words[:3] == ["python", "-m", "sdfuse.profiles.parameters"]:
        assert all((ROOT / w).is_file() for w in words[3:])
    else:
        assert any(command.removeprefix(".venv/bin/").startswith(e) for e in EXTERNAL), \
            f"no check for documented command {command!r}"


def test_the_documents_hold_commands():
    """The extraction itself finds the README's main commands (else every check below is vacuous)."""
    commands = {c for _, c in documented_commands()}
    assert {"make book", "make test"} <= commands
    assert any(c.startswith(".venv/bin/sdfuse reproduce --profile paper") for c in commands)
    assert any(c.startswith("papermill notebooks/01_unet_layers.ipynb") for c in commands)
    keys = {k for _, k, _ in documented_assignments()}
    assert {"sd_model", "dino_model", "captioner_checkpoint"} <= keys


@pytest.mark.parametrize("source, command", documented_commands(), ids=lambda v: v[:60])
def test_every_documented_command_is_accepted(source, command, placeholders, capsys):
    check_command(command, placeholders, capsys)


@pytest.mark.parametrize("source, key, value", documented_assignments(), ids=lambda v: str(v)[:40])
def test_every_documented_parameter_is_accepted(source, key, value, placeholders):
    [(key, value)] = [tuple(w.split("=", 1)) for w in _substitute([f"{key}={value}"], placeholders)]
    if key in parameters.BY_NAME:
        parameters.check_values({key: parameters.parse_assignment(f"{key}={value}")[1]})
    else:
        declared = set().union(*(notebook_parameters(p.stem) for p in NOTEBOOK_DIR.glob("*.ipynb")))
        assert key in declared, f"{source}: -p {key}=… is neither a run parameter nor a notebook's"


def test_a_refused_command_fails_the_check(placeholders, capsys):
    """The checks bite: a misspelt parameter, an unknown target and an undeclared notebook parameter fail."""
    with pytest.raises(AssertionError):
        check_command("sdfuse reproduce -p pairs_per_categroy=2", placeholders, capsys)
    with pytest.raises(AssertionError):
        check_command("make bookk", placeholders, capsys)
    with pytest.raises(AssertionError):
        check_command("papermill notebooks/01_unet_layers.ipynb out.ipynb -p colour red", placeholders, capsys)
    with pytest.raises(SystemExit):
        check_command("sdfuse data fetch", placeholders, capsys)
