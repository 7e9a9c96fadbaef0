"""The monitoring pieces openfero ships, checked by the real tools: promtool and amtool.

Debian's `prometheus` and `prometheus-alertmanager` packages provide them;
`.ci/run` installs both, so these tests never skip: a missing tool fails.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

MONITORING = ROOT / "k8s" / "components" / "monitoring"
COMPOSE = ROOT / "examples" / "compose"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is needed (Debian: apt-get install prometheus prometheus-alertmanager; .ci/run does it)"
    return path


def run(*argv: str, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_alert_rules_pass_promtools_checks_and_their_tests(tmp_path: Path) -> None:
    rule = yaml.safe_load((MONITORING / "rules.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(MONITORING / "rules.test.yaml", tmp_path)
    run(tool("promtool"), "check", "rules", "rules.yaml", cwd=tmp_path)
    out = run(tool("promtool"), "test", "rules", "rules.test.yaml", cwd=tmp_path)
    assert "SUCCESS" in out


def test_every_shipped_alert_has_a_promtool_test() -> None:
    rule = yaml.safe_load((MONITORING / "rules.yaml").read_text())
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MONITORING / "rules.test.yaml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == tested


def test_the_compose_demo_prometheus_config_and_rules_are_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    config["rule_files"] = ["alert-rules.yml"]  # the container's path, here beside the config
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(COMPOSE / "alert-rules.yml", tmp_path)
    run(tool("promtool"), "check", "config", "prometheus.yml", cwd=tmp_path)
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert jobs == {"openfero-ingest", "openfero-dispatcher"}


@pytest.mark.parametrize(
    "config",
    [
        yaml.safe_load((COMPOSE / "alertmanager.yml").read_text()),
        # The Kubernetes example is a part to merge: give it the top-level route a whole config needs.
        {**yaml.safe_load((ROOT / "k8s" / "examples" / "alertmanager.yaml").read_text()), "route": {
            "receiver": "openfero", **yaml.safe_load((ROOT / "k8s" / "examples" / "alertmanager.yaml").read_text())["route"]}},
        yaml.safe_load((ROOT / "k8s" / "examples" / "alertmanager-silences.yaml").read_text()),
    ],
    ids=["compose", "kubernetes-example", "silences-example"],
)
def test_the_alertmanager_configs_pass_amtool_of_the_oldest_version_supported(tmp_path: Path, config: dict) -> None:
    version = run(tool("amtool"), "--version")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "password").write_text("x")
    out = run(tool("amtool"), "check-config", str(path))
    assert "SUCCESS" in out, out + version


def test_the_silences_example_sends_a_remediated_alert_to_openfero_and_on_call_and_others_to_on_call_only() -> None:
    config = ROOT / "k8s" / "examples" / "alertmanager-silences.yaml"
    remediated = run(tool("amtool"), "config", "routes", "test", f"--config.file={config}", "alertname=KubePodCrashLooping", "namespace=shop")
    assert remediated.splitlines()[0] == "openfero,oncall", remediated  # (amtool adds a warning line)
    other = run(tool("amtool"), "config", "routes", "test", f"--config.file={config}", "alertname=DiskFull")
    assert other.startswith("oncall") and "openfero" not in other, other
