"""The scope of the fixtures that build a shared case once per test module.

mutmut maps each function to the tests that call it during one stats run, and a module-scoped
fixture calls it only in the setup of the first test that uses it; the other tests would never
be run against its mutants. During that stats run (``MUTANT_UNDER_TEST=stats``) these fixtures are
built per test instead, so every test that reads the case is mapped to the functions that built it.
"""
from __future__ import annotations

import os


def per_module(fixture_name: str, config) -> str:
    """``module``, except ``function`` while mutmut records which tests reach which function."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "module"
