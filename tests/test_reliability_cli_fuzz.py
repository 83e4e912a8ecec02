"""Wrong values for every parameter of every command (hypothesis, derandomized, bounded).

Each example is one valid command line with one wrong value in it: a run parameter or a notebook's
own parameter (``-p``), ``--profile``, ``--only``, ``--root``, ``--mirror`` or a manifest name. The
command must print ``error: …`` on stderr, exit with code 2, raise nothing, print no traceback and
write nothing: the working folder, the root, the data root and ``$SDFUSE_HOME`` are compared file
by file before and after. The wrong values are drawn from each parameter's kind and bounds, plus
hand-picked nasty ones; the same harness accepts right values (the last tests).
"""
from __future__ import annotations

import ast
import contextlib
import io
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sdfuse.cli import main
from sdfuse.data.manifests import manifest_names
from sdfuse.profiles.parameters import NOTEBOOK_PARAMETERS, RUN_PARAMETERS, Parameter
from sdfuse.profiles.parameters import NOTEBOOKS

FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SDFUSE = str(Path(sys.executable).parent / "sdfuse")
NOTEBOOK_OWN = [p for own in NOTEBOOK_PARAMETERS.values() for p in own]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@pytest.fixture(scope="module")
def places(smoke_root, sdfuse_home, tmp_path_factory):
    """The folders a command could write to, and a file to pass where a folder belongs."""
    base = tmp_path_factory.mktemp("cli_fuzz")
    work, root, data = base / "work", base / "root", base / "data"
    for folder in (work, root, data):
        folder.mkdir()
    (root / "keep.txt").write_text("a folder that is not a book or an assets folder")
    afile = base / "afile"
    afile.write_text("x")
    images = []
    for name, colour in (("a.png", (200, 40, 40)), ("b.png", (40, 40, 200))):
        Image.new("RGB", (96, 64), colour).save(base / name)
        images.append(str(base / name))
    return {"work": work, "root": root, "data": data, "file": afile, "home": sdfuse_home, "images": images}


def _snapshot(folders) -> dict:
    found = {}
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(top) / name
                stat = path.lstat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns, stat.st_mode)
    return found


def _run(argv: list[str], places) -> tuple[int, str]:
    """``sdfuse ARGV`` in-process from the work folder: (exit code, stderr); asserts nothing was written."""
    watched = [places["work"], places["root"], places["data"], places["home"]]
    before = _snapshot(watched)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(places["work"])
    old_data = os.environ.get("SDFUSE_DATA")
    os.environ["SDFUSE_DATA"] = str(places["data"])
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exit_:                            # the argument parser
                code = exit_.code
    finally:
        os.chdir(cwd)
        if old_data is None:
            os.environ.pop("SDFUSE_DATA", None)
        else:
            os.environ["SDFUSE_DATA"] = old_data
    assert _snapshot(watched) == before, f"{argv} wrote something"
    return code, err.getvalue()


def _check_refused(argv: list[str], places) -> None:
    code, err = _run(argv, places)
    assert code == 2, (argv, code, err)
    assert re.search(r"^error: \S", err, re.M), (argv, err)
    assert "Traceback" not in err, (argv, err)


# --- wrong values, by kind --------------------------------------------------------------------------------

def _typed(text: str):
    """What ``-p name=TEXT`` gives a text parameter: a string literal's value, else the text (stripped)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip()
    return value if isinstance(value, str) or value is None else text.strip()


def _number_text(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def wrong_values(p: Parameter, places) -> st.SearchStrategy[str]:
    """Texts for ``-p NAME=TEXT`` that this parameter must refuse."""
    nasty = ["", "[", "{}", "'", "None)", "[[1]]", "{'a': 1}", "b'x'"]
    if p.kind in ("int", "float"):
        options = [st.sampled_from(["abc", "nan", "inf", "-inf", "1e400", "True", "[1]", "(1,)", "1j", "0x"] + nasty)]
        low = p.minimum if p.minimum is not None else -math.inf
        if p.kind == "int":
            options += [st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())
                        .map(repr)]
            if p.minimum is not None:
                options.append(st.integers(max_value=int(p.minimum) - 1).map(str))
            if p.maximum is not None:
                options.append(st.integers(min_value=int(p.maximum) + 1).map(str))
            if p.multiple_of > 1:
                options.append(st.integers(int(low), int(p.maximum)).filter(lambda n: n % p.multiple_of).map(str))
            if p.odd:
                options.append(st.integers(int(low), int(p.maximum)).filter(lambda n: n % 2 == 0).map(str))
        else:
            if p.minimum is not None:
                options.append(st.floats(max_value=p.minimum, allow_nan=False)
                               .filter(lambda x: x < p.minimum or (p.exclusive_minimum and x == p.minimum))
                               .map(_number_text))
            if p.maximum is not None:
                options.append(st.floats(min_value=p.maximum, allow_nan=False).filter(lambda x: x > p.maximum)
                               .map(_number_text))
        return st.one_of(options)
    if p.kind in ("ints", "floats"):
        element = wrong_values(replace(p, kind=p.kind[:-1], default=None), places).filter(
            lambda t: t not in ("", "[", "'", "None)", "[1]", "(1,)", "[[1]]"))  # right inside a list, or unparsable
        valid = p.default[0]
        options = [st.sampled_from(["[]", "()", f"[{valid}, {valid}]", "['a']", "[None]", "[[1]]"]),
                   element.map(lambda t: f"[{valid}, {t}]" if t.strip() else "[]")]
        if p.must_include:
            options.append(st.just(f"[{', '.join(str(v) for v in p.default if v not in p.must_include)}]"))
        return st.one_of(options)
    if p.kind == "bool":
        return st.sampled_from(["2", "0.5", "'yes'", "[True]", "1", "0", "true!", "{}"] + nasty[:3])
    if p.kind == "choice":
        return TEXT.filter(lambda t: _typed(t) is not None and _typed(t) not in p.choices)
    if p.kind == "str":
        blank = st.sampled_from(["''", "'   '", "\"\""])
        if not p.pattern:
            return blank
        return blank | TEXT.filter(lambda t: _typed(t) is not None and not re.fullmatch(p.pattern[0], _typed(t)))
    if p.kind == "path":
        afile = str(places["file"])
        if p.existing:
            return st.sampled_from([str(places["work"] / "no-such-file.pth"), str(places["work"]), "''",
                                    afile + "/x.pth"])
        return st.sampled_from([afile, afile + "/below", "''", "'  '"])
    raise AssertionError(p.kind)


def test_every_parameter_kind_has_wrong_values(places):
    """The strategies cover every parameter (a new kind must be taught here)."""
    for p in RUN_PARAMETERS + tuple(NOTEBOOK_OWN):
        wrong_values(p, places)


# --- the commands ----------------------------------------------------------------------------------------

def _p(name: str, text: str) -> list[str]:
    return ["-p", f"{name}={text}"]


def _reproduce_case(places):
    """``reproduce --dry-run`` with one wrong value (a run, a notebook or a command option)."""
    root = ["--root", str(places["root"])]
    parameter = st.sampled_from([p for p in RUN_PARAMETERS if p.name != "profile"] + NOTEBOOK_OWN).flatmap(
        lambda p: wrong_values(p, places).map(lambda text: root + _p(p.name, text)))
    only = TEXT.filter(lambda t: not _valid_only(t)).map(lambda t: root + ["--only", t])
    profile = TEXT.filter(lambda t: t not in ("smoke", "rehearsal", "paper")).map(lambda t: root + ["--profile", t])
    roots = st.sampled_from([["--root", str(places["file"])], ["--root", str(places["file"]) + "/sub"]])
    unknown = TEXT.filter(lambda t: t.strip() and "=" not in t and t.strip() not in _declared()).map(
        lambda t: root + _p(t, "1"))
    special = st.sampled_from([root + ["-p", "novalue"], root + ["-p", "=3"], root + _p("profile", "paper"),
                               root + _p("seed", "1") + _p("seed", "2"), root + _p("dino_blocks", "[9]"),
                               root + _p("dino_blocks", "[11]"), root + _p("filter_kernel", "25"),
                               root + _p("grid", "4") + _p("filter_kernel", "9")])
    return st.one_of(parameter, only, profile, roots, unknown, special).map(lambda a: ["reproduce", "--dry-run", *a])


def _declared() -> set[str]:
    from sdfuse.book.runner import SUMMARY_NOTEBOOKS, notebook_parameters

    return set().union(*(notebook_parameters(stem) for stem in [*NOTEBOOKS.values(), *SUMMARY_NOTEBOOKS.values()]))


def _valid_only(text: str) -> bool:
    names = [name.strip() for name in text.split(",")]
    return bool(names) and all(n in NOTEBOOKS for n in names) and len(set(names)) == len(names)


def _extract_case(places):
    parameter = st.sampled_from([p for p in RUN_PARAMETERS if p.name != "profile"]).flatmap(
        lambda p: wrong_values(p, places).map(lambda text: _p(p.name, text)))
    notebook_own = st.sampled_from(NOTEBOOK_OWN).map(lambda p: _p(p.name, repr(p.default)))  # not extract's
    profile = TEXT.filter(lambda t: t not in ("smoke", "rehearsal", "paper")).map(lambda t: ["--profile", t])
    return st.one_of(parameter, notebook_own, profile, st.just(_p("profile", "smoke"))).map(
        lambda a: ["extract", "--dry-run", *a])


def _data_case(places):
    names = manifest_names()
    bad_root = st.sampled_from([str(places["file"]), str(places["file"]) + "/sub"])
    bad_name = TEXT.filter(lambda t: t not in names and not t.startswith("-"))
    bad_mirror = TEXT.filter(lambda t: not re.fullmatch(r"https?://[^/\s]+\S*", t)) | st.sampled_from(
        ["ftp://x/y", "http://", "https:///x", "file:///tmp", "//host/x"])
    data = str(places["data"])
    return st.one_of(
        bad_root.map(lambda r: ["data", "list", "--root", r]),
        bad_root.map(lambda r: ["data", "fetch", "spair71k", "--root", r]),
        bad_name.map(lambda n: ["data", "fetch", n, "--root", data]),
        bad_mirror.map(lambda m: ["data", "fetch", "spair71k", "--root", data, "--mirror", m]),
        bad_root.map(lambda r: ["data", "verify", "spair71k", "--root", r]),
        bad_name.map(lambda n: ["data", "verify", n, "--root", data]),
        st.sampled_from(["make-smoke", "make-rehearsal"]).flatmap(lambda c: bad_root.map(
            lambda r: ["data", c, "--root", r]) | st.just(["data", c, "--root", str(places["root"])])),
        st.sampled_from([["data"], ["data", "nope"], ["data", "list", "--nope"], ["nope"], [], ["-x"]]))


def _match_case(places):
    """``match A B`` (two readable 96×64 images) with one wrong value: a run parameter, ``--alpha``,
    ``--points``, ``--out``, ``--profile`` or an image."""
    a, b = places["images"]
    smoke = ["--profile", "smoke"]
    parameter = st.sampled_from([p for p in RUN_PARAMETERS if p.name != "profile"]).flatmap(
        lambda p: wrong_values(p, places).map(lambda text: smoke + _p(p.name, text)))
    alpha = st.sampled_from(["abc", "nan", "-0.1", "1.0001", "inf", ""]).map(lambda t: smoke + ["--alpha", t])
    points = (st.sampled_from(["1", "1,2,3", "1,2;", "nan,3", "x,y", "96,10", "10,64", "-1,5", "1e400,2", ""])
              | TEXT.filter(lambda t: not re.fullmatch(r"\s*\d{1,2}(\.\d*)?\s*,\s*\d{1,2}(\.\d*)?\s*", t))
              ).map(lambda t: smoke + ["--points", t])
    out = st.sampled_from(["match.gif", "match", str(places["file"]) + "/m.png", str(places["work"])]).map(
        lambda t: smoke + ["--out", t])
    profile = TEXT.filter(lambda t: t not in ("smoke", "rehearsal", "paper")).map(lambda t: ["--profile", t])
    images = st.sampled_from([[str(places["file"]), b], [a, str(places["file"])], [a, str(places["work"])],
                              [a, str(places["work"] / "missing.png")]])
    return st.one_of(parameter.map(lambda x: [a, b, *x]), alpha.map(lambda x: [a, b, *x]),
                     points.map(lambda x: [a, b, *x]), out.map(lambda x: [a, b, *x]),
                     profile.map(lambda x: [a, b, *x]), images.map(lambda ab: [*ab, *smoke])).map(
        lambda argv: ["match", *argv])


@FUZZ
@given(st.data())
def test_match_refuses_every_wrong_value_before_anything_runs(places, data):
    _check_refused(data.draw(_match_case(places)), places)


@FUZZ
@given(st.data())
def test_reproduce_refuses_every_wrong_value_before_anything_runs(places, data):
    _check_refused(data.draw(_reproduce_case(places)), places)


@FUZZ
@given(st.data())
def test_extract_refuses_every_wrong_value_before_anything_runs(places, data):
    _check_refused(data.draw(_extract_case(places)), places)


@FUZZ
@given(st.data())
def test_data_commands_refuse_every_wrong_value_before_anything_runs(places, data):
    _check_refused(data.draw(_data_case(places)), places)


def test_the_harness_accepts_right_values(places):
    """The same harness with right values: the dry runs succeed, so refusals come from the wrong values."""
    code, err = _run(["reproduce", "--dry-run", "--root", str(places["root"]), "-p", "cub_classes=[4, 5]",
                      "-p", "alphas=[0.25, 0.5]", "-p", "tss_true_division=True", "-p", "grid=8"], places)
    assert (code, err) == (0, "")
    code, err = _run(["extract", "--dry-run", "-p", "dino_blocks=11", "-p", "device=cuda:1"], places)
    assert (code, err) == (0, "")


@pytest.mark.parametrize("argv, message", [
    (["extract", "-p", "seed=abc"], "error: seed must be an integer, got 'abc'"),
    (["extract", "-p", "pairs_per_category=2.7"], "error: pairs_per_category must be an integer, got 2.7"),
    (["extract", "-p", "pairs_per_category=1000000000000"], "error: pairs_per_category must be <= 100000"),
    (["extract", "-p", "profile=paper"], "error: give the profile as --profile"),
    (["reproduce", "--root", "{file}"], "error: --root='{file}' is a file, not a folder"),
    (["reproduce", "-p", "dino_blocks=11"], "error: dino_blocks=[11] lacks block(s) [9]"),
    (["reproduce", "-p", "cub_classes=[999]"], "error: each of cub_classes must be <= 200, got 999"),
    (["data", "make-smoke", "--root", "{file}"], "error: --root='{file}' is a file, not a folder"),
    (["data", "list", "--root", "{file}"], "error: --root='{file}' is a file, not a folder"),
])
def test_the_examples_of_issue_11_are_clear_errors_from_the_console_script(argv, message, places):
    argv = [a.replace("{file}", str(places["file"])) for a in argv]
    before = _snapshot([places["work"], places["home"]])
    done = subprocess.run([SDFUSE, *argv], capture_output=True, text=True, timeout=120, cwd=places["work"])
    assert done.returncode == 2 and done.stderr.startswith(message.replace("{file}", str(places["file"]))), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert _snapshot([places["work"], places["home"]]) == before
