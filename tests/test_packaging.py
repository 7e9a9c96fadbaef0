"""The package installs as the Dockerfile installs it: wheels of the declared dependencies only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_the_wheels_the_image_installs_run_every_command(tmp_path: Path) -> None:
    # The Dockerfile's two steps, without Docker: build wheels, install them with no index.
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "--wheel-dir", str(wheels), "-c", "constraints.txt", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(wheels), "openfero"],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    for command in ("ingest", "dispatcher", "console", "render", "validate", "dlq", "replay"):
        result = subprocess.run([str(venv / "bin" / "openfero"), command, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"openfero {command} --help: {result.stderr[-2000:]}"
    # Nothing test-only slipped into the image's dependencies.
    installed = subprocess.run([str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True).stdout.lower()
    for test_only in ("pytest", "testcontainers", "jsonschema"):
        assert not re.search(rf"^{test_only}==", installed, re.M), test_only


def test_the_dockerfile_builds_in_two_stages_and_runs_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) == 2 and all("slim" in s for s in stages)
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "--no-index" in final and not re.search(r"apt-get|gcc|build-essential", final)
    assert re.search(r'^ENTRYPOINT \["openfero"\]$', final, re.M)
