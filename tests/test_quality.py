"""The mutation report: mutmut's results read back, the score, equivalents that apply only while their diff holds."""
import json

import pytest

from sdfuse.book.quality import excluded_functions, read_equivalents, read_results, status, summarise

DIFF = "--- sdfuse/geometry.py\n+++ sdfuse/geometry.py\n@@ -1 +1 @@\n-    return a + b\n+    return a - b\n"


def test_status_of_mutmut_exit_codes():
    assert [status(c) for c in (1, 3, 0, 33, 5, 36, -24, 2, None)] == [
        "killed", "killed", "survived", "no tests", "no tests", "timeout", "timeout", "suspicious", "not run"]


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "mutants" / "sdfuse"
    folder.mkdir(parents=True)
    codes = {"sdfuse.geometry.x_f__mutmut_1": 1, "sdfuse.geometry.x_f__mutmut_2": 0, "sdfuse.geometry.x_g__mutmut_1": 33,
             "sdfuse.geometry.x_g__mutmut_2": 36}
    (folder / "geometry.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (folder / "metrics.py.meta").write_text(json.dumps({"exit_code_by_key": {"sdfuse.metrics.x_h__mutmut_1": 1}}))
    return read_results(tmp_path / "mutants")


def test_read_results_names_each_mutants_module(results, tmp_path):
    assert results["sdfuse.geometry.x_f__mutmut_2"] == ("sdfuse/geometry.py", "survived")
    assert results["sdfuse.metrics.x_h__mutmut_1"] == ("sdfuse/metrics.py", "killed")
    assert len(results) == 5
    kept = read_results(tmp_path / "mutants", ["sdfuse/metrics.py"])  # geometry.py dropped from only_mutate
    assert kept == {"sdfuse.metrics.x_h__mutmut_1": ("sdfuse/metrics.py", "killed")}


def test_score_leaves_out_equivalents_whose_diff_still_holds(results, tmp_path):
    path = tmp_path / "equivalents.toml"
    path.write_text('[[equivalent]]\nmutant = "sdfuse.geometry.x_f__mutmut_2"\nchanged = "return a - b"\n'
                    'reason = "b is always 0 here"\n')
    equivalents = read_equivalents(path)
    record = summarise(results, {"sdfuse.geometry.x_f__mutmut_2": DIFF}, equivalents)
    assert record["counts"] == {"mutants": 5, "killed": 2, "timeout": 1, "survived": 1, "no_tests": 1,
                                "suspicious": 0, "equivalent": 1, "not_run": 0}
    assert record["complete"] is True
    assert record["score"] == pytest.approx(100 * 3 / 4)
    assert record["modules"]["sdfuse/geometry.py"] == {"mutants": 4, "killed": 2, "survived": 2, "not_run": 0}
    assert [(s["mutant"], s["equivalent"]) for s in record["survivors"]] == [
        ("sdfuse.geometry.x_f__mutmut_2", "b is always 0 here"), ("sdfuse.geometry.x_g__mutmut_1", None)]
    stale = summarise(results, {"sdfuse.geometry.x_f__mutmut_2": DIFF.replace("a - b", "a * b")}, equivalents)
    assert stale["counts"]["equivalent"] == 0 and stale["score"] == pytest.approx(100 * 3 / 5)


def test_an_interrupted_run_scores_only_the_mutants_it_reached(tmp_path):
    folder = tmp_path / "mutants" / "sdfuse"
    folder.mkdir(parents=True)
    codes = {"sdfuse.metrics.x_h__mutmut_1": 1, "sdfuse.metrics.x_h__mutmut_2": 0, "sdfuse.metrics.x_h__mutmut_3": None,
             "sdfuse.metrics.x_h__mutmut_4": None, "sdfuse.metrics.x_h__mutmut_5": 1}
    (folder / "metrics.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    record = summarise(read_results(tmp_path / "mutants"), {}, {})
    assert record["complete"] is False
    assert (record["counts"]["mutants"], record["counts"]["not_run"], record["counts"]["survived"]) == (5, 2, 1)
    assert record["score"] == round(100 * 2 / 3, 2)                     # 2 killed of the 3 that ran
    assert [s["mutant"] for s in record["survivors"]] == ["sdfuse.metrics.x_h__mutmut_2"]
    assert record["modules"]["sdfuse/metrics.py"] == {"mutants": 5, "killed": 2, "survived": 1, "not_run": 2}


def test_excluded_functions_are_those_whose_header_says_so(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["pkg/a.py", "pkg/b.py"]\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(
        "def kept(x):\n    return x  # pragma: no mutate block  (not a header)\n\n\n"
        "def checked(x) -> None:  # pragma: no mutate block  (input check)\n    assert x\n\n\n"
        "class C:\n    def _write(self, path):  # pragma: no mutate block  (cache I/O)\n        pass\n")
    (tmp_path / "pkg" / "b.py").write_text("async def fetch():  # pragma: no mutate block  (device handling)\n    pass\n"
                                           "def bare():  # pragma: no mutate\n    pass\n")
    assert excluded_functions(tmp_path) == [
        {"module": "pkg/a.py", "function": "checked", "reason": "input check"},
        {"module": "pkg/a.py", "function": "_write", "reason": "cache I/O"},
        {"module": "pkg/b.py", "function": "fetch", "reason": "device handling"}]
