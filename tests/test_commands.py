"""The commands a newcomer meets first: the run script, --help, and the README's settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from openfero.cli import main
from shared.loop import loop_factory
from shared.settings import ServiceSettings, SettingsError, describe, load
from tests.conftest import ROOT, free_port


def test_the_run_command_shows_the_reference_alert_becoming_the_reference_job(tmp_path, prefix, amqp_url) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(
        HOME=str(tmp_path),  # no ~/.kube/config: dry run
        OPENFERO_AMQP_URL=amqp_url,
        OPENFERO_QUEUE_PREFIX=prefix,
        OPENFERO_INGEST_ADDR=f"127.0.0.1:{free_port()}",
    )
    result = subprocess.run([str(ROOT / "scripts" / "run"), "--once"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "dry run" in out
    assert '{"accepted": 1}' in out
    assert re.search(r"name: openfero-kubequotaalmostfull-firing-[0-9a-f]{10}", out)
    assert "- name: OPENFERO_ZONE\n          value: internal" in out
    assert out.count("- name: OPENFERO_") == 13


@pytest.mark.parametrize("command", ["ingest", "dispatcher"])
def test_every_setting_of_a_service_is_in_its_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    groups = {"ingest": ("OPENFERO_INGEST_ADDR", "OPENFERO_MAX_BODY_BYTES"), "dispatcher": ("OPENFERO_DRY_RUN", "OPENFERO_JOB_NAMESPACE")}
    for env in ("OPENFERO_AMQP_URL", "OPENFERO_QUEUE_PREFIX", *groups[command]):
        assert env in result.output


def test_python_dash_m_help_works() -> None:
    for module in ("ingest", "dispatcher"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "OPENFERO_AMQP_URL" in result.stdout


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env for env, _, _ in describe() if f"`{env}`" not in readme]
    assert missing == []


def test_the_readme_test_command_is_what_ci_runs() -> None:
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test" in readme and "scripts/run" in readme


@pytest.mark.parametrize(
    ("module", "env", "value"),
    [
        ("ingest", "OPENFERO_EVENT_LOOP", "tokio"),
        ("ingest", "OPENFERO_SHUTDOWN_GRACE_SECONDS", "soon"),
        ("ingest", "OPENFERO_MAX_BODY_BYTES", "big"),
        ("dispatcher", "OPENFERO_EVENT_LOOP", "tokio"),
        ("dispatcher", "OPENFERO_SHUTDOWN_GRACE_SECONDS", "soon"),
        ("dispatcher", "OPENFERO_PREFETCH", "lots"),  # read once the loop runs
    ],
)
def test_a_bad_setting_is_a_usage_error_not_a_traceback(module: str, env: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, env: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"Error: {env}={value!r}" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_uvloop_the_error_says_how_to_run_on_the_standard_loop(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what a failed import looks like
    with pytest.raises(SettingsError, match="uvloop is not installed: install it, or set asyncio"):
        loop_factory("uvloop")
    loop = loop_factory(load(ServiceSettings, {"OPENFERO_EVENT_LOOP": " AsyncIO "}).event_loop)()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_freezing_the_start_up_heap_leaves_full_collections_nothing_to_walk() -> None:
    # A full collection over the start-up heap stalled a dispatcher's loop for about 90 ms.
    import gc

    from shared.loop import freeze_startup_heap

    freeze_startup_heap()
    try:
        assert gc.get_freeze_count() > 10_000
        assert len(gc.get_objects(generation=2)) < 1_000
    finally:
        gc.unfreeze()
