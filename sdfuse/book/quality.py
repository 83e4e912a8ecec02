"""Mutation-testing results: ``make mutate``'s summary file, and the survivors judged equivalent.

``make mutate`` runs mutmut over the protocol modules (``[tool.mutmut]`` in ``pyproject.toml``) and
then ``python -m sdfuse.book.quality``, which reads mutmut's per-file results (``mutants/**/*.py.meta``)
and writes ``results/quality/mutation.json`` (schema :data:`SCHEMA`)::

    {"schema": "sdfuse-mutation/1", "tool": "mutmut 3.8.1", "git_commit": "…", "generated_at": "…",
     "complete": true,                          # false: an interrupted run, ``not_run`` mutants not reached
     "counts": {"mutants": n, "killed": k, "timeout": t, "survived": s, "no_tests": u, "suspicious": x,
                "equivalent": e, "not_run": r},
     "score": 100·(killed + timeout) / (mutants − equivalent − not_run),   # %, of the mutants that ran
     "modules": {"sdfuse/protocol/geometry.py": {"mutants": …, "killed": …, "survived": …}, …},
     "survivors": [{"mutant": "sdfuse.protocol.geometry.x_resize_pad__mutmut_3",
                    "module": "sdfuse/protocol/geometry.py", "status": "survived" | "no tests", "diff": "…",
                    "equivalent": reason or null}, …],
     "excluded": [{"module": "sdfuse/features/cache.py", "function": "verify", "reason": "cache I/O"}, …]}

``excluded`` lists the functions of the mutated modules that mutmut skips because their header says
``# pragma: no mutate block  (reason)``: input checks, cache I/O, device handling and the like, which
``make test``'s reliability and cache tests pin (:func:`excluded_functions`).

mutmut 3 mutates code inside functions only, so the module-level protocol constants (and the steps
the first mutation survey found unpinned) are hand-written mutants in ``tests/protocol_mutants.toml``:
:func:`run_protocol_mutants` applies each alone to a copy of the code and runs its tests there, and
the report lists them under ``"protocol_mutants"`` (``[{"name", "file", "status": "killed" |
"survived" | "stale"}]``; stale: the ``old`` text no longer occurs exactly once).

A survivor is *equivalent* when ``tests/mutation_equivalents.toml`` lists its name with the reason
and a ``changed`` line that still occurs in its diff (so an entry stops applying when the code
under it changes). The book's run page shows the score and the survivors (:func:`mutation_views`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = "sdfuse-mutation/1"
REPO = Path(__file__).resolve().parents[2]
EQUIVALENTS = REPO / "tests" / "mutation_equivalents.toml"
PROTOCOL_MUTANTS = REPO / "tests" / "protocol_mutants.toml"
COPIED = ("sdfuse", "tests", "data_manifests", "pyproject.toml")
"""What a protocol mutant's copy of the repository holds."""
MUTATION_JSON = Path("results") / "quality" / "mutation.json"
DETECTED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
"""mutmut exit codes of a detected mutant (a failing test, or a test run killed for taking too long)."""
UNTESTED = {0: "survived", 5: "no tests", 33: "no tests"}


def status(exit_code: int | None) -> str:
    """mutmut's verdict of one exit code: killed, timeout, survived, no tests or suspicious; "not run"
    for a mutant an interrupted run did not reach (no exit code yet)."""
    if exit_code is None:
        return "not run"
    return DETECTED.get(exit_code) or UNTESTED.get(exit_code) or "suspicious"


def read_results(mutants: Path, modules: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """{mutant name: (module path, status)} from mutmut's ``mutants/**/*.py.meta`` files; with ``modules``
    (``only_mutate``), only theirs: a module dropped from the configuration leaves its old file behind."""
    results = {}
    for meta in sorted(Path(mutants).rglob("*.py.meta")):
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        if modules is not None and module not in modules:
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            results[name] = (module, status(code))
    return results


def read_equivalents(path: Path = EQUIVALENTS) -> dict[str, dict]:
    """{mutant name: {"changed": line, "reason": text}} of the survivors judged equivalent."""
    if not Path(path).is_file():
        return {}
    return {entry["mutant"]: entry for entry in tomllib.loads(Path(path).read_text()).get("equivalent", [])}


def mutated_modules(root: Path = REPO) -> list[str]:
    """``[tool.mutmut] only_mutate`` of ``root``'s ``pyproject.toml``: the modules mutmut mutates."""
    return tomllib.loads((Path(root) / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]


def excluded_functions(root: Path = REPO) -> list[dict]:
    """The functions of :func:`mutated_modules` whose header excludes them, with the reason given there."""
    excluded = []
    for module in mutated_modules(root):
        for line in (Path(root) / module).read_text().splitlines():
            head, _, pragma = line.partition("# pragma: no mutate block")
            name = head.strip().removeprefix("async ").removeprefix("def ").split("(", 1)[0]
            if pragma and head.lstrip().startswith(("def ", "async def ")):
                excluded.append({"module": module, "function": name, "reason": pragma.strip().strip("()")})
    return excluded


def mutant_diff(name: str) -> str:
    """The mutant's diff as ``mutmut show`` prints it (run in the folder holding ``mutants/``)."""
    done = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True)
    return done.stdout.strip()


def run_protocol_mutants(root: Path = REPO, jobs: int = 2, path: Path = PROTOCOL_MUTANTS) -> list[dict]:
    """Apply each mutant of ``path`` alone to a copy of ``root`` and run its tests there (module docstring)."""
    mutants = tomllib.loads(Path(path).read_text())["mutant"]
    with tempfile.TemporaryDirectory(prefix="sdfuse-mutant-") as tmp:
        def check(numbered: tuple[int, dict]) -> dict:
            number, mutant = numbered
            copy = Path(tmp) / str(number)
            for name in COPIED:
                source = Path(root) / name
                if source.is_dir():
                    shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(source, copy / name)
            target = copy / mutant["file"]
            text = target.read_text()
            verdict = {"name": mutant["name"], "file": mutant["file"]}
            if text.count(mutant["old"]) != 1:
                return verdict | {"status": "stale"}
            target.write_text(text.replace(mutant["old"], mutant["new"]))
            done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant["tests"]],
                                  cwd=copy, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(copy)})
            return verdict | {"status": "survived" if done.returncode == 0 else "killed"}

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(check, enumerate(mutants)))


def summarise(results: dict[str, tuple[str, str]], diffs: dict[str, str], equivalents: dict[str, dict]) -> dict:
    """The :data:`SCHEMA` record of a run (module docstring)."""
    survivors, modules = [], {}
    counts = dict.fromkeys(("mutants", "killed", "timeout", "survived", "no_tests", "suspicious", "equivalent",
                            "not_run"), 0)
    for name, (module, verdict) in sorted(results.items()):
        counts["mutants"] += 1
        counts[verdict.replace(" ", "_")] += 1
        per_module = modules.setdefault(module, {"mutants": 0, "killed": 0, "survived": 0, "not_run": 0})
        per_module["mutants"] += 1
        per_module["killed" if verdict in ("killed", "timeout") else "not_run" if verdict == "not run"
                   else "survived"] += 1
        if verdict in ("killed", "timeout", "not run"):
            continue
        diff = diffs.get(name, "")
        entry = equivalents.get(name)
        reason = entry["reason"] if entry and entry["changed"] in diff else None
        counts["equivalent"] += reason is not None
        survivors.append({"mutant": name, "module": module, "status": verdict, "diff": diff, "equivalent": reason})
    judged = counts["mutants"] - counts["equivalent"] - counts["not_run"]
    score = 100 * (counts["killed"] + counts["timeout"]) / judged if judged else 100.0
    return {"schema": SCHEMA, "complete": counts["not_run"] == 0, "counts": counts, "score": round(score, 2),
            "modules": modules, "survivors": survivors}


def write_report(root: Path = REPO, out: Path | None = None, wall_s: float | None = None) -> Path:
    """Write ``results/quality/mutation.json`` from the mutmut run under ``root`` and return its path."""
    from importlib.metadata import version

    from ..data.storage import atomic_write_text

    results = read_results(Path(root) / "mutants", mutated_modules(root))
    untested = [name for name, (_, verdict) in results.items() if verdict not in ("killed", "timeout", "not run")]
    diffs = {name: mutant_diff(name) for name in untested}
    record = summarise(results, diffs, read_equivalents())
    record["protocol_mutants"] = run_protocol_mutants(root)
    record["excluded"] = excluded_functions(root)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    record |= {"tool": f"mutmut {version('mutmut')}", "git_commit": commit, "wall_s": wall_s,
               "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = Path(out or Path(root) / MUTATION_JSON)
    atomic_write_text(out, json.dumps(record, indent=1, ensure_ascii=False) + "\n", what="the mutation report",
                      fix="free disk space or make results/ writable")
    return out


def mutation_views(path: Path) -> None:
    """Display a mutation report: the score, the counts per module and every survivor (the run page)."""
    import pandas as pd
    from IPython.display import Markdown, display

    from .pages import folded

    record = json.loads(Path(path).read_text())
    counts = record["counts"]
    not_run = counts.get("not_run", 0)
    partial = (f"**An interrupted run**: {not_run} of {counts['mutants']} mutants were not reached, so the score is "
               f"of the mutants that ran, not of the whole. " if not_run else "")
    display(Markdown(
        f"## Mutation testing\n\n{partial}`make mutate` ({record.get('tool', 'mutmut')}, commit "
        f"`{str(record.get('git_commit', ''))[:10]}`, {record.get('generated_at', '')}): **{record['score']:.1f} %** "
        f"of {counts['mutants'] - counts['equivalent'] - not_run} non-equivalent mutants of the protocol modules detected "
        f"({counts['killed']} killed, {counts['timeout']} by timeout; {counts['survived']} survived, "
        f"{counts['no_tests']} reached by no fast test, {counts['equivalent']} judged equivalent, listed with the "
        f"reason in `tests/mutation_equivalents.toml`)."))
    display(pd.DataFrame(record["modules"]).T.rename_axis("module"))
    protocol = pd.DataFrame(record.get("protocol_mutants", []), columns=["name", "file", "status"])
    if not protocol.empty:
        display(Markdown(f"Hand-written mutants of protocol constants and steps (`tests/protocol_mutants.toml`): "
                         f"{(protocol['status'] == 'killed').sum()} of {len(protocol)} killed."))
        display(protocol.set_index("name"))
    excluded = pd.DataFrame(record.get("excluded", []), columns=["module", "function", "reason"])
    if not excluded.empty:
        display(folded(excluded.set_index(["module", "function"]),
                       f"Not mutated: {len(excluded)} functions that check inputs, read and write the cache or handle "
                       f"the device (`# pragma: no mutate block` on their header; make test's reliability and cache "
                       f"tests pin them)"))
    survivors = pd.DataFrame(record["survivors"], columns=["mutant", "status", "diff", "equivalent"])
    if not survivors.empty:
        survivors["diff"] = survivors["diff"].map(_changed_lines)
        display(survivors.set_index("mutant"))


def _changed_lines(diff: str) -> str:
    """The ``-``/``+`` lines of a unified diff, without the file headers."""
    return "\n".join(line for line in diff.splitlines()
                     if line[:1] in "-+" and not line.startswith(("---", "+++")))


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else None
    print(f"wrote {write_report(wall_s=seconds)}")
