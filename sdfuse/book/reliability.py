"""What the book's reliability page claims, and how many tests check each claim, counted from the test files.

Each :class:`Guarantee` names the test files that check it; :func:`count_tests` parses those files
(no test runs, nothing is imported) and counts their test functions, and how many of them are
property-based (hypothesis ``@given``). The run page glues the counts for ``book/reliability.md``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[2] / "tests"


@dataclass(frozen=True)
class Guarantee:
    """One claim of the reliability page and the test files that check it."""

    key: str
    title: str
    tests: tuple[str, ...]


GUARANTEES: tuple[Guarantee, ...] = (
    Guarantee("no_stale", "No stale or partial number is shown", ("test_reliability_record.py",)),
    Guarantee("crash_safe", "Crash-safe files", ("test_reliability_reproduce.py", "test_reliability_cache.py",
                                                 "test_reliability_faults.py")),
    Guarantee("clear_errors", "Wrong command input is a clear error, before anything runs",
              ("test_reliability_cli_fuzz.py", "test_cli.py", "test_parameters.py")),
    Guarantee("bad_data", "Damaged, inconsistent or hostile data files are refused, naming the file",
              ("test_reliability_inputs.py", "test_reliability_fuzz.py", "test_reliability_annotations.py",
               "test_reliability_archives.py", "test_data_cli.py")),
    Guarantee("cache_verified", "Feature-cache entries are verified on read", ("test_cache_verification.py",)),
    Guarantee("safe_weights", "Weights are never unpickled; offline runs fail at once",
              ("test_reliability_weights.py",)),
    Guarantee("signals", "Ctrl-C, SIGTERM and file permissions", ("test_reliability_signals.py",)),
    Guarantee("side_by_side", "Notebook kernels of runs side by side cannot collide", ("test_reliability_kernels.py",)),
)


def _is_given(decorator: ast.expr) -> bool:
    call = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(call, ast.Name) and call.id == "given") or (isinstance(call, ast.Attribute)
                                                                    and call.attr == "given")


def count_file(path: Path) -> tuple[int, int]:
    """(test functions, of which property-based) in one test file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    tests = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and node.name.startswith("test_")]
    return len(tests), sum(any(_is_given(d) for d in test.decorator_list) for test in tests)


def count_tests(tests_dir: str | Path = TESTS_DIR) -> dict[str, tuple[int, int]] | None:
    """Guarantee key → (test functions, of which property-based) over its test files; None without a
    tests folder (an installed package)."""
    tests_dir = Path(tests_dir)
    if not tests_dir.is_dir():
        return None
    counts = {}
    for guarantee in GUARANTEES:
        per_file = [count_file(tests_dir / name) for name in guarantee.tests if (tests_dir / name).is_file()]
        counts[guarantee.key] = (sum(n for n, _ in per_file), sum(p for _, p in per_file))
    return counts
