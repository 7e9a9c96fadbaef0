"""Templates in definitions: the Go original's forms, Jinja, strictness, and alert data kept as data. No I/O."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from dispatcher.definitions import Definition
from dispatcher.rendering import RenderError, render
from dispatcher.templating import TemplateError, context, go_to_jinja, referenced_labels, render_string, templated_fields
from shared.envelope import envelopes_from_webhook
from tests.conftest import ROOT

WEBHOOK = {
    "status": "firing",
    "receiver": "openfero",
    "groupKey": "{}:{alertname=\"PodCrashLooping\"}",
    "externalURL": "http://alertmanager:9093",
    "groupLabels": {"alertname": "PodCrashLooping"},
    "commonLabels": {"alertname": "PodCrashLooping", "severity": "warning"},
    "commonAnnotations": {"summary": "Pod is crash looping."},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "PodCrashLooping", "pod": "web-1", "namespace": "shop", "container": "main", "service.name": "web"},
            "annotations": {"summary": "Pod is crash looping.", "runbook": "https://runbooks/x"},
            "startsAt": "2025-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
        }
    ],
}
ENVELOPE = envelopes_from_webhook(WEBHOOK)[0]
VARS = context(ENVELOPE)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ .Alert.Labels.pod }}", "web-1"),
        ("{{ .Alert.Annotations.summary }}", "Pod is crash looping."),
        ("{{ .Labels.namespace }}", "shop"),
        ("{{ .Annotations.runbook }}", "https://runbooks/x"),
        ("{{ .Status }}", "firing"),
        ("{{ .GroupKey }}", '{}:{alertname="PodCrashLooping"}'),
        ("{{ .HookMessage.Status }}", "firing"),
        ("{{ .HookMessage.CommonLabels.severity }}", "warning"),
        ("{{ .Alert.Status }}/{{ .Alert.StartsAt }}", "firing/2025-01-01T00:00:00Z"),
        ("{{- .Labels.pod -}}", "web-1"),
        ("pod={{ .Labels.pod }} ns={{ .Labels.namespace }}", "pod=web-1 ns=shop"),
    ],
)
def test_the_go_originals_forms_work_unchanged(template: str, expected: str) -> None:
    assert render_string(template, VARS) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ alert.labels.pod }}", "web-1"),
        ("{{ alert.labels['service.name'] }}", "web"),
        ("{{ group.commonAnnotations.summary }}", "Pod is crash looping."),
        ("{{ alert.labels.missing | default('none') }}", "none"),
        ("{% if alert.status == 'firing' %}fix{% else %}skip{% endif %}", "fix"),
        ("{{ alert.labels.pod | upper }}", "WEB-1"),
        ("{{ 'My_Pod.x' | name_safe }}", "my-pod-x"),
        ("{{ 'a b/c' | label_value }}", "a_b_c"),
        ("{{ alert.labels.pod | shell_quote }}", "web-1"),
        ("{{ \"x; touch /tmp/pwned\" | shell_quote }}", "'x; touch /tmp/pwned'"),
        ("{{ alert.fingerprint }}", ENVELOPE.alert.fingerprint),
        ("no template here: {not one}", "no template here: {not one}"),
    ],
)
def test_jinja_features_and_helpers(template: str, expected: str) -> None:
    assert render_string(template, VARS) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ .Alert.Labels.nothere }}", "undefined value"),
        ("{{ nothing }}", "undefined value"),
        ("{{ .Labels.pod ", "template syntax error"),
        ("{% if %}", "template syntax error"),
        ("{{ alert.__class__.__mro__ }}", "undefined value|template error"),
        ("{{ ''.__class__.__subclasses__() }}", "template error|undefined value"),
    ],
)
def test_undefined_values_syntax_errors_and_sandbox_escapes_fail(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render_string(template, VARS)


def test_go_dots_are_dropped_only_where_a_name_starts() -> None:
    assert go_to_jinja("{{ .Labels.pod }} and .Labels outside") == "{{ Labels.pod }} and .Labels outside"
    assert go_to_jinja("{{ alert.labels['a.b'] }}") == "{{ alert.labels['a.b'] }}"
    assert go_to_jinja("{{ 1.5 }}") == "{{ 1.5 }}"


def test_referenced_labels_are_found_in_both_syntaxes() -> None:
    assert referenced_labels("{{ .Alert.Labels.pod }} {{ .Labels.namespace }} {{ alert.labels['service.name'] }}") == {"pod", "namespace", "service.name"}


def definition(text: str) -> Definition:
    return Definition.parse("ns/openfero-podcrashlooping-firing", "PodCrashLooping", text)


TEMPLATED = """
apiVersion: batch/v1
kind: Job
metadata:
  name: restart-{{ .Labels.pod }}
  labels: {pod: "{{ .Labels.pod }}", why: "{{ .Annotations.summary }}"}
spec:
  template:
    metadata:
      labels: {ns: "{{ .Labels.namespace }}/x"}
    spec:
      restartPolicy: Never
      containers:
      - name: fix
        image: bitnami/kubectl
        env:
        - {name: POD_NAME, value: "{{ .Alert.Labels.pod }}"}
        command: [/bin/sh, -c, "kubectl delete pod {{ .Labels.pod | shell_quote }} -n {{ .Labels.namespace | shell_quote }}"]
"""


def test_a_whole_job_is_rendered_field_by_field() -> None:
    job = render(definition(TEMPLATED), ENVELOPE, 60).body
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "POD_NAME", "value": "web-1"} in container["env"]
    assert container["command"][2] == "kubectl delete pod web-1 -n shop"
    assert job["metadata"]["name"].startswith("restart-web-1-")
    assert job["metadata"]["labels"]["why"] == "Pod_is_crash_looping"  # made a valid label value
    assert job["spec"]["template"]["metadata"]["labels"]["ns"] == "shop_x"


def test_a_definition_without_templates_renders_as_before() -> None:
    plain = TEMPLATED.replace("{{ .Labels.pod }}", "p").replace("{{ .Alert.Labels.pod }}", "p").replace("{{ .Annotations.summary }}", "s")
    plain = plain.replace("{{ .Labels.pod | shell_quote }}", "p").replace("{{ .Labels.namespace | shell_quote }}", "n").replace("{{ .Labels.namespace }}", "n")
    job = render(definition(plain), ENVELOPE, 60).body
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["/bin/sh", "-c", "kubectl delete pod p -n n"]


def test_a_template_error_names_the_definition_and_the_field() -> None:
    broken = TEMPLATED.replace("{{ .Alert.Labels.pod }}", "{{ .Alert.Labels.nope }}")
    with pytest.raises(RenderError) as raised:
        render(definition(broken), ENVELOPE, 60)
    text = str(raised.value)
    assert "ns/openfero-podcrashlooping-firing" in text
    assert "spec.template.spec.containers[0].env[0].value" in text and "nope" in text


def test_an_unquoted_template_gets_a_hint() -> None:
    d = definition("kind: Job\nspec:\n  x: {{ .Labels.pod }}\n")
    assert "must be quoted" in d.parse_error


@pytest.mark.parametrize(
    "field",
    ["metadata:\n  namespace: '{{ .Labels.namespace }}'", "spec:\n  template:\n    spec:\n      serviceAccountName: '{{ .Labels.sa }}'"],
)
def test_alert_data_cannot_choose_namespace_or_service_account(field: str) -> None:
    text = "apiVersion: batch/v1\nkind: Job\n" + field
    with pytest.raises(RenderError, match="may not be a template"):
        render(definition(text), ENVELOPE, 60)


ATTACKS = ["x; touch {marker}", "$(touch {marker})", "`touch {marker}`", "x' ; touch {marker}; echo '", "a\ntouch {marker}", "x && touch {marker} #"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_label_values_cannot_run_commands_through_a_shell(attack: str, tmp_path) -> None:
    # Given an alert whose label value is a shell attack, and the two safe ways a definition uses it
    marker = tmp_path / "pwned"
    value = attack.format(marker=marker)
    webhook = {"alerts": [{"labels": {"alertname": "A", "pod": value}, "status": "firing"}]}
    envelope = envelopes_from_webhook(webhook)[0]
    text = """
apiVersion: batch/v1
kind: Job
metadata: {name: safe}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: quoted
        image: busybox
        command: [/bin/sh, -c, "echo {{ .Labels.pod | shell_quote }}"]
      - name: via-env
        image: busybox
        command: [/bin/sh, -c, 'echo "$OPENFERO_POD"']
"""
    job = render(Definition.parse("ns/cm", "A", text), envelope, 60).body
    # When each container's command runs in a real shell, with the env the Job would have
    for container in job["spec"]["template"]["spec"]["containers"]:
        env = {e["name"]: e["value"] for e in container["env"]}
        result = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=10, cwd=ROOT)
        # Then the value is printed as text and nothing ran
        assert result.stdout.rstrip("\n") == value
    assert not marker.exists()


def shipped_jobs() -> list[tuple[str, dict]]:
    """(where, Job-like tree) of every definition shipped in k8s/."""
    found = []
    for path in sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("k8s/**/*.yaml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "ConfigMap" and (doc.get("metadata") or {}).get("labels", {}).get("app") == "openfero":
                found += [(f"{path.name}:{key}", yaml.safe_load(text)) for key, text in (doc.get("data") or {}).items()]
            elif doc.get("kind") == "Operarius":
                found.append((path.name, doc["spec"]["jobTemplate"]))
    return found


def test_every_shipped_example_passes_alert_values_safely() -> None:
    # An alert value in a command or its arguments must be shell_quote'd; env vars are safe as they are.
    jobs = shipped_jobs()
    assert jobs, "no examples found"
    for where, job in jobs:
        for field, text in templated_fields(job):
            if re.search(r"\.(command|args)\[", field):
                for expression in re.findall(r"{{(.*?)}}", text, re.S):
                    assert "shell_quote" in expression, f"{where} {field}: {{{{{expression}}}}} is not shell_quote'd"
