"""`openfero render` and `openfero validate`: definitions checked before they meet a cluster. No broker, no cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from openfero.cli import main
from tests.conftest import ROOT
from tests.test_rendering import REFERENCE_ENV

EXAMPLES = ROOT / "examples"  # alerts
DEFINITIONS = ROOT / "k8s" / "examples"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_render_prints_the_reference_job() -> None:
    code, out, err = run("render", "--alert", str(EXAMPLES / "kubequotaalmostfull.alert.json"), "--definition", str(DEFINITIONS))
    assert code == 0
    [job] = list(yaml.safe_load_all(out))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == REFERENCE_ENV
    assert job["metadata"]["name"].startswith("openfero-kubequotaalmostfull-firing-")
    assert "spec.template.labels is not a field of a Job" in err


def test_render_uses_the_dispatchers_choice_and_templates() -> None:
    code, out, _ = run("render", "--alert", str(EXAMPLES / "kubepodcrashlooping.alert.json"), "--definition", str(DEFINITIONS / "podcrashlooping.operarius.yaml"))
    assert code == 0
    [job] = list(yaml.safe_load_all(out))
    assert job["metadata"]["name"].startswith("pod-crashloop-restart-")
    assert "restarting default/test-crashloop-pod" in job["spec"]["template"]["spec"]["containers"][0]["command"][2]


def test_render_names_the_same_job_as_the_dispatcher() -> None:
    # Job names depend only on the alert occurrence, so two renders and the dispatcher agree.
    args = ("render", "--alert", str(EXAMPLES / "kubequotaalmostfull.alert.json"), "--definition", str(DEFINITIONS))
    names = {yaml.safe_load(run(*args)[1])["metadata"]["name"] for _ in range(2)}
    from tests.test_rendering import reference_definition, reference_envelope
    from dispatcher.rendering import render

    assert names == {render(reference_definition(), reference_envelope(), 60).name}


def test_render_says_when_nothing_matches(tmp_path: Path) -> None:
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "Unknown"}, "status": "firing"}))  # one alert on its own
    code, out, err = run("render", "--alert", str(alert), "--definition", str(DEFINITIONS))
    assert code == 1 and out == "" and "Unknown (firing): no definition matches" in err


def test_validate_passes_the_examples_and_the_go_originals_definitions() -> None:
    code, out, _ = run("validate", str(DEFINITIONS), str(ROOT / "tests" / "data" / "go-original"))
    assert code == 0, out
    assert "4 definitions, 0 errors" in out


def write(tmp_path: Path, name: str, docs: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


def cm(name: str, key: str, text: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "openfero"}}, "data": {key: text}}


JOB = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fix}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i, env: [{name: P, value: '%s'}]}]}}}"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (cm("openfero-a-firing", "A", "kind: Job\nspec: [unclosed"), "ConfigMap openfero-a-firing key A: not valid YAML"),
        (cm("openfero-a-firing", "A", "kind: Job\nspec:\n  x: {{ .Labels.pod }}\n"), "must be quoted"),
        (cm("openfero-a-firing", "A", "apiVersion: v1\nkind: Pod"), "not a Job manifest"),
        (cm("openfero-a-firing", "A", JOB % "{{ .Labels.pod "), "spec.template.spec.containers[0].env[0].value: template syntax error"),
        (cm("openfero-a-firing", "A", JOB % "{{ nonsense }}"), "undefined value"),
        (cm("openfero-b-firing", "A", JOB % "x"), "never used: alert 'A' looks for ConfigMap openfero-a-firing"),
        (cm("openfero-a-burning", "A", JOB % "x"), "never used"),
        ({"apiVersion": "openfero.io/v1alpha1", "kind": "Operarius", "metadata": {"name": "o"}, "spec": {"alertSelector": {"matchers": ["nope"]}, "jobTemplate": {"spec": {}}}}, "Operarius o: matcher 'nope'"),
        ({"apiVersion": "openfero.io/v1alpha1", "kind": "Operarius", "metadata": {"name": "o"}, "spec": {"alertSelector": {"matchers": ['pod=~"(?!keep-).*"']}, "jobTemplate": {"spec": {}}}}, """Operarius o: matcher 'pod=~"(?!keep-).*"': RE2 cannot compile"""),
        ({"apiVersion": "openfero.io/v1alpha1", "kind": "Operarius", "metadata": {"name": "o"}, "spec": {}}, "Operarius o: spec.jobTemplate is required"),
    ],
)
def test_validate_finds_broken_definitions_and_names_file_and_field(tmp_path: Path, doc: dict, message: str) -> None:
    path = write(tmp_path, "defs.yaml", [doc])
    code, out, _ = run("validate", str(path))
    assert code == 1
    assert f"error: {path}" in out and message in out, out


def test_validate_checks_the_labels_templates_read_against_an_alert(tmp_path: Path) -> None:
    path = write(tmp_path, "defs.yaml", [cm("openfero-kubequotaalmostfull-firing", "KubeQuotaAlmostFull", JOB % "{{ .Labels.pod }} {{ .Labels.nothere }}")])
    code, out, _ = run("validate", str(path))
    assert code == 0, out  # without an alert, every label read is assumed present
    code, out, _ = run("validate", str(path), "--alert", str(EXAMPLES / "kubequotaalmostfull.alert.json"))
    assert code == 1
    assert "reads label 'nothere', which the alert does not have" in out and "'pod'" not in out


def test_validate_warns_about_names_cut_short(tmp_path: Path) -> None:
    text = (JOB % "x").replace("name: fix", "name: " + "a" * 60)
    code, out, _ = run("validate", str(write(tmp_path, "defs.yaml", [cm("openfero-a-firing", "A", text)])))
    assert code == 0
    assert "metadata.name is cut to 52 characters" in out


def test_validate_refuses_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("a: [b\n")
    code, out, _ = run("validate", str(path))
    assert code == 1 and f"error: {path}: not valid YAML" in out
