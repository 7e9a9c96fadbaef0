"""Alert data is data: attacks through labels and annotations, each performed. No I/O but a real shell.

Labels are shaped by whoever can create a pod or a namespace. Each test
here sends such a label down one route to code or authority (a shell, the
kubelet's $(VAR) expansion, an env name that a guard did not see, the
Job's identity, a template bomb) and asserts it stays data.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.catalog import Catalog, load_files
from dispatcher.definitions import Definition
from dispatcher.handling import Handler
from dispatcher.results import Kind
from dispatcher.naming import env_name
from dispatcher.operarii import Operarius
from dispatcher.rendering import IDENTITY_FIELDS, JobRules, Refused, RenderError, render
from shared.envelope import Envelope, envelopes_from_webhook
from tests.conftest import ROOT
from tests.kubelet import container_view

SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}


def alert(labels: dict[str, str], annotations: dict[str, str] | None = None) -> Envelope:
    webhook = {"alerts": [{"labels": labels, "annotations": annotations or {}, "status": "firing", "startsAt": "2025-01-01T00:00:00Z"}]}
    return envelopes_from_webhook(webhook)[0]


def job_from(text: str, envelope: Envelope, rules: JobRules | None = None) -> dict[str, Any]:
    return render(Definition.parse("ns/openfero-a-firing", "A", text), envelope, rules or JobRules(60)).body


def containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return [*(pod.get("initContainers") or []), *pod["containers"]]


# -- env names: one name per label, and no name two labels share ----------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("pod", "OPENFERO_POD"),
        ("service.name", "OPENFERO_SERVICE_NAME"),
        ("http.status-code", "OPENFERO_HTTP_STATUS_CODE"),
        ("weird name/with:stuff", "OPENFERO_WEIRD_NAME_WITH_STUFF"),
        ("café", "OPENFERO_CAF_"),
        ("9lives", "OPENFERO_9LIVES"),
        ("$(x)", "OPENFERO___X_"),
    ],
)
def test_env_names_are_posix_names(label: str, expected: str) -> None:
    assert env_name(label) == expected
    assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", env_name(label))


def test_a_shell_reads_every_injected_name() -> None:
    job = job_from(SCRIPTED.format(script='printf "%s|%s" "$OPENFERO_SERVICE_NAME" "$OPENFERO_HTTP_STATUS_CODE"'), alert({"alertname": "A", "service.name": "api", "http.status-code": "503"}))
    env, argv = container_view(containers(job)[0])
    assert subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10).stdout == "api|503"


@pytest.mark.parametrize("labels", [{"namespace": "shop", "NAMESPACE": "kube-system"}, {"a.b": "x", "a_b": "y"}, {"a-b": "x", "A.B": "y"}])
def test_labels_that_share_an_env_name_are_refused(labels: dict[str, str]) -> None:
    with pytest.raises(Refused, match="would both be OPENFERO_"):
        job_from(SCRIPTED.format(script="true"), alert({"alertname": "A", **labels}))


async def test_a_case_twin_cannot_slip_past_an_operarius_guard() -> None:
    # Given the shipped pod-restart Operarius, whose matcher keeps it out of kube-system
    catalog = Catalog()
    load_files(ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml", catalog)

    class Sink:
        def __init__(self) -> None:
            self.created: list[dict[str, Any]] = []

        async def create(self, body: dict[str, Any]) -> bool:
            self.created.append(body)
            return True

    sink = Sink()
    handler = Handler(catalog, sink, JobRules(60))
    # When an alert passes the guard with `namespace` and carries `NAMESPACE: kube-system` too
    twin = alert({"alertname": "KubePodCrashLooping", "namespace": "shop", "NAMESPACE": "kube-system", "pod": "p"})
    outcome = await handler.handle(twin.to_json(), {})
    # Then no Job is made, and it is not a dead letter either (anyone could fill that queue)
    assert outcome.kind is Kind.REFUSED and "NAMESPACE" in outcome.reason
    assert sink.created == []


# -- the kubelet's $(VAR) expansion ---------------------------------------------------------


SECRET_JOB = """
kind: Job
metadata: {name: fix}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        env:
        - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
        - {name: TARGET_DIR, value: /data}
        - {name: POD_NOTE, value: "pod {{ .Labels.pod }} in $(TARGET_DIR)"}
        command: [/bin/tool, "--pod={{ .Labels.pod }}", "--dir=$(TARGET_DIR)"]
        args: ["{{ .Labels.pod }}", "{{ .Annotations.note }}"]
"""

EXPANSION_ATTACKS = ["$(DB_PASSWORD)", "$$(DB_PASSWORD)", "$(TARGET_DIR)", "$$", "a$b$", "$(", "$()", "$$$(DB_PASSWORD)"]


@pytest.mark.parametrize("engine", ["go", "jinja"])
@pytest.mark.parametrize("value", EXPANSION_ATTACKS)
def test_the_container_sees_the_label_byte_for_byte(engine: str, value: str) -> None:
    text = SECRET_JOB.replace("metadata: {name: fix}", f"metadata: {{name: fix, annotations: {{openfero.io/template-engine: {engine}}}}}")
    job = job_from(text, alert({"alertname": "A", "pod": value}, {"note": value}))
    env, argv = container_view(containers(job)[0], secrets={"DB_PASSWORD": "s3cret"})
    assert env["OPENFERO_POD"] == value  # injected by openfero
    assert env["POD_NOTE"] == f"pod {value} in /data"  # the author's $(TARGET_DIR) still expands
    assert argv == ["/bin/tool", f"--pod={value}", "--dir=/data", value, value]
    assert not any("s3cret" in part for part in [*env.values(), *argv] if part != env["DB_PASSWORD"])


def test_fields_the_kubelet_does_not_expand_are_not_escaped() -> None:
    text = SECRET_JOB.replace("metadata: {name: fix}", 'metadata: {name: fix, annotations: {note: "{{ .Labels.pod }}"}}')
    job = job_from(text, alert({"alertname": "A", "pod": "$(x)"}, {"note": ""}))
    assert job["metadata"]["annotations"]["note"] == "$(x)"


# -- shell: every shipped example, hostile labels, a real shell ------------------------------


SCRIPTED = """
kind: Job
metadata: {{name: fix}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: [/bin/sh, -c, '{script}']
"""

SHELL_ATTACKS = [
    "$(touch {marker})",
    "`touch {marker}`",
    "x; touch {marker}",
    "x' ; touch {marker}; echo '",
    'x" ; touch {marker}; echo "',
    "a\ntouch {marker}",
    "x && touch {marker} #",
    "--all",
    "-n",
    "--kubeconfig=/tmp/{marker}",
    "$(DB_PASSWORD)",
]


def shipped_definitions() -> list[tuple[str, Definition, dict[str, str]]]:
    """(where, definition, labels its selector needs) of every definition shipped in k8s/ and examples/."""
    found = []
    for path in sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("k8s/**/*.yaml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "ConfigMap" and (doc.get("metadata") or {}).get("labels", {}).get("app") == "openfero":
                for key, text in (doc.get("data") or {}).items():
                    found.append((f"{path.name}:{key}", Definition.parse(f"x/{doc['metadata']['name']}", key, text), {"alertname": key}))
            elif doc.get("kind") == "Operarius":
                doc["metadata"].setdefault("namespace", "x")
                o = Operarius.from_resource(doc)
                found.append((path.name, o.definition, {"alertname": o.alertname or "A", **o.labels}))
    return found


def kubectl_stub(folder: Path) -> Path:
    """A `kubectl` that records its arguments, one JSON list a line, and does nothing else."""
    calls = folder / "calls.jsonl"
    stub = folder / "kubectl"
    stub.write_text(f'#!/bin/sh\nexec python3 -c \'import json,sys; open("{calls}","a").write(json.dumps(sys.argv[1:])+"\\n")\' "$@"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return calls


def test_examples_are_found() -> None:
    names = {where for where, _, _ in shipped_definitions()}
    assert {"podcrashlooping.operarius.yaml", "kubequotaalmostfull.configmap.yaml:KubeQuotaAlmostFull"} <= names


@pytest.mark.parametrize("attack", SHELL_ATTACKS)
@pytest.mark.parametrize(("where", "definition", "selector"), shipped_definitions(), ids=lambda x: x if isinstance(x, str) else "")
def test_hostile_labels_through_every_shipped_example(where: str, definition: Definition, selector: dict[str, str], attack: str, tmp_path: Path) -> None:
    # Given an alert whose every label and annotation is the attack (but those its selector fixes)
    marker = tmp_path / "pwned"
    value = attack.format(marker=marker)
    labels = {name: value for name in ("pod", "namespace", "container", "job", "node", "deployment")}
    envelope = alert({**labels, **selector}, {"summary": value, "description": value})
    job = render(definition, envelope, JobRules(60)).body
    calls = kubectl_stub(tmp_path)
    ran = 0
    # When each container's script runs in a real shell, with the env the kubelet would give it
    for container in containers(job):
        env, argv = container_view(container)
        if not argv or Path(argv[0]).name not in SHELLS:
            assert not any(value in part for part in argv), f"{where}: alert data in an exec-form command: {argv}"
            continue
        env = {**env, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
        subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, cwd=tmp_path)
        ran += 1
    assert ran, f"{where}: no shell script found to try"
    # Then nothing ran, and the label reached kubectl only as a value, never as an option
    assert not marker.exists()
    for call in (json.loads(line) for line in calls.read_text().splitlines()) if calls.exists() else []:
        options = call[: call.index("--")] if "--" in call else call
        assert value not in options, f"{where}: the label became an argument before --: {call}"
        assert all(not part.endswith(value) or part.startswith("--") and "=" in part for part in options), call


def test_the_pod_restart_example_deletes_exactly_the_alerts_pod(tmp_path: Path) -> None:
    [(where, definition, selector)] = [d for d in shipped_definitions() if d[0] == "podcrashlooping.operarius.yaml"]
    envelope = alert({**selector, "pod": "--all", "namespace": "$(touch x)"}, {"summary": "s"})
    job = render(definition, envelope, JobRules(60)).body
    calls = kubectl_stub(tmp_path)
    env, argv = container_view(containers(job)[0])
    subprocess.run(argv, env={**env, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, capture_output=True, timeout=10, cwd=tmp_path)
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        ["delete", "pod", "--namespace=$(touch x)", "--wait=false", "--", "--all"]
    ]


# -- who a Job runs as, and where ------------------------------------------------------------


IDENTITY_JOB = {
    "kind": "Job",
    "metadata": {"name": "fix"},
    "spec": {"template": {"metadata": {}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}},
}


def with_field(path: tuple[str, ...], value: str) -> str:
    job = json.loads(json.dumps(IDENTITY_JOB))
    node = job
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return yaml.safe_dump(job)


@pytest.mark.parametrize("path", IDENTITY_FIELDS, ids=".".join)
def test_alert_data_cannot_choose_where_or_as_whom_a_job_runs(path: tuple[str, ...]) -> None:
    with pytest.raises(RenderError, match=re.escape(".".join(path)) + " may not be a template"):
        job_from(with_field(path, "{{ .Labels.x }}"), alert({"alertname": "A", "x": "kube-system"}))


def test_the_identity_fields_are_the_four_that_set_one() -> None:
    assert set(IDENTITY_FIELDS) == {
        ("metadata", "namespace"),
        ("spec", "template", "metadata", "namespace"),
        ("spec", "template", "spec", "serviceAccountName"),
        ("spec", "template", "spec", "serviceAccount"),
    }


def test_an_operarius_cannot_template_its_identity_either() -> None:
    resource = {
        "metadata": {"name": "o", "namespace": "n"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"serviceAccount": "{{ .Labels.sa }}", "containers": [{"name": "c", "image": "i"}]}}}}},
    }
    with pytest.raises(RenderError, match="serviceAccount may not be a template"):
        render(Operarius.from_resource(resource).definition, alert({"alertname": "A", "sa": "admin"}), JobRules(60))


RULES = JobRules(60, "openfero-jobs", frozenset({("openfero-jobs", "openfero-dispatcher"), ("*", "cluster-admin")}))


@pytest.mark.parametrize(
    ("field", "account"),
    [("serviceAccountName", "openfero-dispatcher"), ("serviceAccount", "openfero-dispatcher"), ("serviceAccountName", "cluster-admin")],
)
def test_a_job_may_not_run_as_a_forbidden_account(field: str, account: str) -> None:
    with pytest.raises(RenderError, match=f"service account '{account}'"):
        job_from(with_field(("spec", "template", "spec", field), account), alert({"alertname": "A"}), RULES)


def test_other_accounts_and_the_default_one_are_fine() -> None:
    job_from(with_field(("spec", "template", "spec", "serviceAccountName"), "openfero-pod-restarter"), alert({"alertname": "A"}), RULES)
    job_from(yaml.safe_dump(IDENTITY_JOB), alert({"alertname": "A"}), RULES)
    with pytest.raises(RenderError, match="'default'"):
        job_from(yaml.safe_dump(IDENTITY_JOB), alert({"alertname": "A"}), JobRules(60, "openfero-jobs", frozenset({("openfero-jobs", "default")})))


def test_the_forbidden_accounts_come_from_the_settings_with_the_dispatchers_own() -> None:
    from shared.settings import KubeSettings, load

    settings = load(
        KubeSettings,
        {
            "OPENFERO_FORBIDDEN_SERVICE_ACCOUNTS": "kube-system/replicaset-controller, cluster-admin",
            "OPENFERO_DISPATCHER_NAMESPACE": "openfero",
            "OPENFERO_DISPATCHER_SERVICE_ACCOUNT": "openfero-dispatcher",
        },
    )
    rules = JobRules(60, "openfero", settings.forbidden_accounts())
    assert rules.forbids("openfero", "openfero-dispatcher") and not rules.forbids("openfero-jobs", "openfero-dispatcher")
    assert rules.forbids("kube-system", "replicaset-controller") and not rules.forbids("default", "replicaset-controller")
    assert rules.forbids("any-namespace", "cluster-admin")
    with pytest.raises(RenderError, match="service account 'openfero-dispatcher'"):
        job_from(with_field(("spec", "template", "spec", "serviceAccountName"), "openfero-dispatcher"), alert({"alertname": "A"}), rules)


# -- the size of a rendered Job --------------------------------------------------------------


def _job_with(script: str, containers: int = 1) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": f"c{i}", "image": "busybox", "command": ["sh", "-c", script]} for i in range(containers)]}}},
        }
    )


def test_a_definition_whose_job_is_over_one_mebibyte_is_the_definitions_failure() -> None:
    from dispatcher.rendering import MAX_RENDERED_BYTES

    assert MAX_RENDERED_BYTES == 1024 * 1024
    below = job_from(_job_with("x" * (MAX_RENDERED_BYTES - 2000)), alert({"alertname": "A"}))
    assert len(below["spec"]["template"]["spec"]["containers"][0]["command"][2]) == MAX_RENDERED_BYTES - 2000
    with pytest.raises(RenderError, match=r"the rendered Job has \d+ bytes, over the limit of 1048576") as raised:
        job_from(_job_with("x" * MAX_RENDERED_BYTES), alert({"alertname": "A"}))
    assert "ns/openfero-a-firing" in str(raised.value)


def test_labels_that_make_a_job_too_large_refuse_the_alert_not_the_definition() -> None:
    # Every container gets every label: 40 containers and 30 kB of labels make 1.2 MB.
    labels = {"alertname": "A", **{f"l{i}": "v" * 1000 for i in range(30)}}
    with pytest.raises(Refused, match="because of the alert's labels") as raised:
        job_from(_job_with("true", containers=40), alert(labels))
    assert raised.value.reason == "too_large"
    # The same definition with a small alert is fine
    job_from(_job_with("true", containers=40), alert({"alertname": "A"}))


# -- template bombs ----------------------------------------------------------------------------


BOMBS = {
    "jinja": [
        "{{ 'a' * 1000000 }}",
        "{{ ['a'] * 1000000 }}",
        "{{ 10 ** 1000000 }}",
        "{{ 9 ** 99 ** 99 }}",
        "{{% for a in range(1000) %}}{{% for b in range(1000) %}}x{{% endfor %}}{{% endfor %}}",
        "{{% for a in range(100000) %}}x{{% endfor %}}",
        "{{% macro f(n) %}}{{ f(n) }}{{% endmacro %}}{{ f(1) }}",
        "{{% for a in range(1000) recursive %}}{{ loop(range(1000)) }}{{% endfor %}}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ '%099999999d' % 1 }}",
        "{{ '{:>99999999}'.format(1) }}",
        "{{ 'x' | indent(100000000, true) }}",
        "{{ 'x' | center(100000000) }}",
        "{{% for a in range(1000) %}}{{ 'x' * 60000 }}{{% endfor %}}",
    ],
    "go": [
        '{{ range $a := .Alert.Labels }}{{ range $b := $.Alert.Labels }}{{ range $c := $.Alert.Labels }}{{ range $d := $.Alert.Labels }}{{ range $e := $.Alert.Labels }}x{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}',
        '{{ define "f" }}{{ template "f" . }}{{ end }}{{ template "f" . }}',
        '{{ printf "%0999999d" 1 }}',
        '{{ printf "%.999999f" 1.0 }}',
        '{{ define "a" }}{{ . }}{{ . }}{{ . }}{{ . }}{{ . }}{{ . }}{{ . }}{{ . }}{{ end }}'
        '{{ define "b" }}{{ template "a" . }}{{ template "a" . }}{{ template "a" . }}{{ template "a" . }}{{ template "a" . }}{{ end }}'
        '{{ template "b" .Labels.big }}',
    ],
}


@pytest.mark.parametrize(("engine", "bomb"), [(e, b) for e, bombs in BOMBS.items() for b in bombs])
def test_template_bombs_fail_fast_without_exhausting_the_dispatcher(engine: str, bomb: str) -> None:
    text = SCRIPTED.format(script="x").replace("'x'", json.dumps(bomb))
    text = text.replace("metadata: {name: fix}", f"metadata: {{name: fix, annotations: {{openfero.io/template-engine: {engine}}}}}")
    labels = {"alertname": "A", "big": "y" * 16000, **{f"l{i}": str(i) for i in range(99)}}
    started = time.perf_counter()
    with pytest.raises(RenderError):
        job_from(text, alert(labels))
    # A loose bound that catches a hang; normal rendering takes about 0.1 ms (scripts/bench).
    assert time.perf_counter() - started < 1.0


async def test_a_hostile_definition_stalls_neither_the_event_loop_nor_the_next_alerts() -> None:
    # Given a definition at the edge of its bounds (nested ranges up to the step limit)
    bomb = BOMBS["go"][0]
    text = SCRIPTED.format(script="x").replace("'x'", json.dumps(bomb))
    catalog = Catalog()
    catalog.replace_configmaps([{"metadata": {"name": "openfero-a-firing", "namespace": "n"}, "data": {"A": text}}])
    catalog.replace_operarii([])

    class Sink:
        async def create(self, body: dict[str, Any]) -> bool:
            return True

    handler = Handler(catalog, Sink(), JobRules(60))
    body = alert({"alertname": "A", **{f"l{i}": str(i) for i in range(99)}}).to_json()
    started = time.perf_counter()
    await handler.handle(body, {})
    one = time.perf_counter() - started
    # When ten such alerts are handled while the loop also ticks every millisecond
    gaps: list[float] = []

    async def tick() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            gaps.append(time.perf_counter() - before)

    gc.disable()  # the collector's full passes stall any loop; the services freeze their start-up heap against them
    try:
        ticker = asyncio.create_task(tick())
        outcomes = await asyncio.gather(*(handler.handle(body, {}) for _ in range(10)))
        ticker.cancel()
    finally:
        gc.enable()
    # Then each is a dead letter naming the limit, and the loop kept ticking: no gap near a render's own time
    assert all(o.kind is Kind.FAILED and o.failure is not None and "max_steps" in o.failure.reason for o in outcomes)
    assert one > 0.005, f"the hostile render took {one * 1000:.1f} ms: too cheap to show a stall"
    assert max(gaps) < 0.1, f"the event loop stalled {max(gaps) * 1000:.0f} ms"


def test_the_definitions_own_values_may_refer_to_the_alerts_labels() -> None:
    # The OPENFERO_ variables come first, so the kubelet can put them into the definition's own values.
    text = SECRET_JOB.replace("- {name: TARGET_DIR, value: /data}", "- {name: TARGET_DIR, value: /data}\n        - {name: WHO, value: 'pod $(OPENFERO_POD)'}")
    job = job_from(text, alert({"alertname": "A", "pod": "$(DB_PASSWORD)"}, {"note": "n"}))
    env, _ = container_view(containers(job)[0], secrets={"DB_PASSWORD": "s3cret"})
    assert env["WHO"] == "pod $(DB_PASSWORD)"  # the label, as text: expanded once, never again


def test_fields_given_by_the_clients_python_names_are_dropped_and_reported() -> None:
    # service_account_name means nothing to the API server (it would drop it): nor does it to openfero.
    text = SCRIPTED.format(script="true").replace("restartPolicy: Never", "restartPolicy: Never\n      service_account_name: openfero-dispatcher")
    rendered = render(Definition.parse("ns/openfero-a-firing", "A", text), alert({"alertname": "A", "app_name": "x"}), JobRules(60))
    assert "service_account_name" not in rendered.body["spec"]["template"]["spec"]
    assert rendered.dropped_fields == ["spec.template.spec.service_account_name"]
