"""The import contracts (pyproject's [tool.importlinter]) catch what they forbid.

scripts/check shows they hold for the code as it is; here a copy of the
packages gets one planted import per contract, and lint-imports must name each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "ingest", "dispatcher", "openfero", "console")


def _copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "import_contracts.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text)


def _lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    # Run where the copy is: lint-imports puts its working folder first on sys.path,
    # so the copy's packages are read, not the installed ones.
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-logo", "--no-cache"],
        cwd=where, capture_output=True, text=True, timeout=120,
    )


def test_each_contract_names_the_import_that_breaks_it(tmp_path: Path) -> None:
    # Given a copy of the packages with one forbidden import planted for each contract
    copy = _copy(tmp_path)
    _append(copy / "ingest" / "reading.py", "from dispatcher import handling")  # a service imports the other
    _append(copy / "shared" / "durations.py", "from openfero import records")  # shared imports a layer above
    _append(copy / "console" / "app.py", "from openfero.cli import main")  # the command, imported by the console
    _append(copy / "dispatcher" / "jobs.py", "from dispatcher import handling")  # the dispatcher's layers, upside down
    _append(copy / "dispatcher" / "naming.py", "import socket")  # a pure module does I/O
    _append(
        copy / "dispatcher" / "retrying.py",
        # Model classes are allowed, however the import is laid out; the watch, even inside a function, is not.
        "from kubernetes.client import (\n    V1Pod,\n)\n\n\ndef follow():\n    from kubernetes import watch\n",
    )

    # When lint-imports reads the copy
    result = _lint_imports(copy)

    # Then it fails, every contract is broken, and each by the import planted for it
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 5 broken." in out, out
    assert "ingest is not allowed to import dispatcher: - ingest.reading -> dispatcher.handling" in out
    assert "shared is not allowed to import openfero: - shared.durations -> openfero.records" in out
    assert "Illegal imports of protected package openfero.cli: - console.app -> openfero.cli" in out
    assert "dispatcher.jobs is not allowed to import dispatcher.handling: - dispatcher.jobs -> dispatcher.handling" in out
    assert "dispatcher.naming is not allowed to import socket: - dispatcher.naming -> socket" in out
    assert "- dispatcher.retrying imports kubernetes.watch (l." in out
    assert "V1Pod" not in out


def test_the_contracts_reach_what_a_pure_module_imports(tmp_path: Path) -> None:
    # Given a copy where a module that rendering imports reaches for the API client
    copy = _copy(tmp_path)
    _append(copy / "dispatcher" / "naming.py", "from kubernetes.client import ApiClient\nimport aiohttp")

    # When lint-imports reads it
    result = _lint_imports(copy)

    # Then rendering is named, with the chain that leads there
    out = " ".join(result.stdout.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "dispatcher.rendering -> dispatcher.naming imports kubernetes.client.ApiClient" in out
    assert "dispatcher.rendering is not allowed to import aiohttp: - dispatcher.rendering -> dispatcher.naming" in out
    assert "Contracts: 3 kept, 2 broken." in out
