"""The test suite's own rules. No I/O beyond reading the tests' source."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(source: str) -> list[str]:
    """The test modules (tests/test_*.py) that ``source`` imports, however it writes the import."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level and not module.startswith("tests"):
                module = f"tests.{module}" if module else "tests"
            if _is_test_module(module):
                found.append(module)
            elif module == "tests":
                found += [f"tests.{alias.name}" for alias in node.names if alias.name.startswith("test_")]
    return found


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "tests" and parts[1].startswith("test_")


def test_no_module_of_the_tests_imports_a_test_module() -> None:
    # What several modules share lives in tests/helpers.py (or conftest.py, harness.py, the doubles):
    # a test module imported by another would run its tests, and its fixtures, twice over.
    imports = {path.name: imported_test_modules(path.read_text()) for path in sorted(TESTS.glob("*.py"))}
    assert {name: found for name, found in imports.items() if found} == {}


def test_the_check_sees_every_way_of_writing_the_import() -> None:
    source = "\n".join(
        [
            "from tests.test_faults import alerts",
            "import tests.test_rendering",
            "from tests import test_replay, helpers",
            "from .test_matching import CLASSIC",
            "from tests.helpers import definition",
            "import tests.conftest",
            "def later():\n    from tests.test_ingest import start_client",
        ]
    )
    assert imported_test_modules(source) == ["tests.test_faults", "tests.test_rendering", "tests.test_replay", "tests.test_matching", "tests.test_ingest"]
