"""`openfero render` and `openfero validate`: definitions checked before they meet a cluster. No broker, no cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from openfero.cli import main
from tests.conftest import ROOT
from tests.helpers import REFERENCE_ENV, reference_definition, reference_envelope

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
    assert job["metadata"]["finalizers"] == ["openfero.io/outcome"]  # as the dispatcher creates it, tracking on


def test_render_uses_the_dispatchers_choice_and_templates() -> None:
    code, out, _ = run("render", "--alert", str(EXAMPLES / "kubepodcrashlooping.alert.json"), "--definition", str(DEFINITIONS / "podcrashlooping.operarius.yaml"))
    assert code == 0
    [job] = list(yaml.safe_load_all(out))
    assert job["metadata"]["name"].startswith("pod-crashloop-restart-")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["OPENFERO_POD"], env["OPENFERO_NAMESPACE"]) == ("test-crashloop-pod", "default")
    assert env["SUMMARY"] and job["spec"]["template"]["metadata"]["labels"]["pod"] == "test-crashloop-pod"


def test_render_names_the_same_job_as_the_dispatcher() -> None:
    # Job names depend only on the alert occurrence, so two renders and the dispatcher agree.
    args = ("render", "--alert", str(EXAMPLES / "kubequotaalmostfull.alert.json"), "--definition", str(DEFINITIONS))
    names = {yaml.safe_load(run(*args)[1])["metadata"]["name"] for _ in range(2)}
    from dispatcher.rendering import JobRules, render

    assert names == {render(reference_definition(), reference_envelope(), JobRules(60)).name}


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
        ({**cm("openfero-a-firing", "A", JOB % "x"), "metadata": {"name": "openfero-a-firing", "annotations": {"openfero.io/silence": "maybe"}}}, "openfero.io/silence: 'maybe' is not true or false"),
        ({"apiVersion": "openfero.io/v1alpha1", "kind": "Operarius", "metadata": {"name": "o"}, "spec": {"silence": {"enabled": True, "afterSuccess": "later"}, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}, "'later' is not keep or expire"),
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


def script_job(*argv: str, env: str = "") -> str:
    return (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fix}\nspec: {template: {spec: {restartPolicy: Never, containers: "
        f"[{{name: c, image: i, {env} command: {json.dumps(list(argv))}}}]}}}}}}"
    )


@pytest.mark.parametrize(
    ("argv", "env", "warning"),
    [
        (["sh", "-c", 'echo "{{ .Labels.pod | shell_quote }}"'], "", "is inside double quotes in a shell script"),
        (["/bin/bash", "-c", "kubectl delete pod -- {{ .Labels.pod }}"], "", "is pasted into a shell script unquoted"),
        (["sh", "-c", 'kubectl delete pod "$OPENFERO_POD"'], "", "$OPENFERO_POD is passed to kubectl as a positional argument with no `--`"),
        (["sh", "-c", 'x=$(kubectl get pod -o name "${OPENFERO_POD}")'], "", "$OPENFERO_POD is passed to kubectl"),
        (["sh", "-c", 'kubectl delete pod -n ns "$P"'], "env: [{name: P, value: '{{ .Labels.pod }}'}],", "$P is passed to kubectl"),
        (["sh", "-c", "kubectl delete pod {{ .Labels.pod | shell_quote }}"], "", "is passed to kubectl as a positional argument"),
        (["kubectl", "delete", "pod", "{{ .Labels.pod }}"], "", "argument 3 starts with alert data and no `--` comes before it"),
    ],
)
def test_validate_warns_where_alert_data_can_become_code_or_an_option(tmp_path: Path, argv: list[str], env: str, warning: str) -> None:
    path = write(tmp_path, "defs.yaml", [cm("openfero-a-firing", "A", script_job(*argv, env=env))])
    code, out, _ = run("validate", str(path))
    assert code == 0, out  # warnings, not errors
    assert warning in out, out


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", 'kubectl delete pod --namespace="$OPENFERO_NAMESPACE" -- "$OPENFERO_POD"'],
        ["sh", "-c", "printf '%s\\n' \"$OPENFERO_POD\"; [ -z \"$OPENFERO_POD\" ] && exit 1"],
        ["sh", "-c", "kubectl delete pod -- {{ .Labels.pod | shell_quote }}"],
        ["kubectl", "delete", "pod", "--", "{{ .Labels.pod }}"],
        ["sh", "-c", "printf '%s' \"${#ARR[@]}\" '{% raw %}' -- \"$OPENFERO_POD\""],
    ],
)
def test_validate_is_quiet_about_the_safe_ways(tmp_path: Path, argv: list[str]) -> None:
    code, out, _ = run("validate", str(write(tmp_path, "defs.yaml", [cm("openfero-a-firing", "A", script_job(*argv))])))
    assert code == 0 and "0 warnings" in out, out


def test_validate_warns_about_privileges_and_pod_security(tmp_path: Path) -> None:
    privileged = script_job("true").replace("image: i,", "image: i, securityContext: {privileged: true, capabilities: {add: [SYS_ADMIN]}},")
    privileged = privileged.replace("restartPolicy: Never,", "restartPolicy: Never, hostPID: true, volumes: [{name: h, hostPath: {path: /}}],")
    path = write(tmp_path, "defs.yaml", [cm("openfero-a-firing", "A", privileged)])
    code, out, _ = run("validate", str(path))
    assert code == 0
    for warning in ("hostPID: true", "hostPath", "containers[0]: privileged", "adds capabilities SYS_ADMIN"):
        assert warning in out, out
    code, out, _ = run("validate", str(path), "--pod-security", "baseline")
    assert "Pod Security 'baseline' would reject its pods: containers[0]: capabilities beyond the baseline: SYS_ADMIN" in out


def test_the_shipped_examples_fit_the_job_namespaces_pod_security() -> None:
    code, out, _ = run("validate", str(DEFINITIONS), "--pod-security", "baseline")
    assert code == 0 and "would reject" not in out, out
    code, out, _ = run("validate", str(DEFINITIONS / "podcrashlooping.operarius.yaml"), "--pod-security", "restricted")
    assert code == 0 and "0 warnings" in out, out


def test_validate_says_which_definitions_are_jinjas(tmp_path: Path) -> None:
    jinja = JOB % '{{ alert.labels.pod | default("x") }}{% if x %}'
    code, out, _ = run("validate", str(write(tmp_path, "defs.yaml", [cm("openfero-a-firing", "A", jinja)])))
    assert code == 0
    assert "its templates are Jinja's, not Go's" in out and "{% ... %} is text" in out, out


def test_validate_warns_that_a_resolved_alert_gets_no_silence(tmp_path: Path) -> None:
    doc = cm("openfero-a-resolved", "A", JOB % "x")
    doc["metadata"]["annotations"] = {"openfero.io/silence": "true"}
    code, out, _ = run("validate", str(write(tmp_path, "defs.yaml", [doc])))
    assert code == 0
    assert "asks for a silence, which openfero holds only for firing alerts" in out
