"""Rendering a definition for an alert: names, labels, env vars, dropped fields. No I/O."""

from __future__ import annotations

import json
import re

import orjson
import pytest

from dispatcher.definitions import Definition
from dispatcher.naming import label_value
from dispatcher.rendering import (
    MAX_RENDERED_BYTES,
    JobRules,
    Refused,
    RenderError,
    expanded_by_kubelet,
    job_name,
    render,
    rerun_window,
    service_account,
)
from shared.envelope import Envelope, envelopes_from_webhook
from tests.conftest import reference_alert_bytes
from tests.helpers import REFERENCE_ENV, reference_definition, reference_envelope


def alert(labels: dict[str, str], status: str = "firing", starts: str = "2025-01-01T00:00:00Z") -> Envelope:
    return envelopes_from_webhook({"alerts": [{"labels": labels, "status": status, "startsAt": starts}]})[0]


def definition(text: str) -> Definition:
    return Definition.parse("ns/openfero-a-firing", "A", text)


SIMPLE_JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: fix}
spec:
  template:
    spec:
      restartPolicy: Never
      initContainers: [{name: prep, image: busybox}]
      containers:
      - name: main
        image: busybox
        env: [{name: OPENFERO_POD, value: from-definition}]
"""


def test_reference_job_gets_exactly_the_alert_labels_as_env() -> None:
    job = render(reference_definition(), reference_envelope(), JobRules(3600))
    [container] = job.body["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "python-job"
    assert container["image"] == "ubuntu:latest"
    assert container["args"] == ["bash", "-c", 'echo "Hallo Welt"']
    assert {e["name"]: e["value"] for e in container["env"]} == REFERENCE_ENV
    assert [e["name"] for e in container["env"]] == sorted(REFERENCE_ENV)


def test_reference_fields_a_job_does_not_have_are_dropped_and_reported() -> None:
    job = render(reference_definition(), reference_envelope(), JobRules(3600))
    assert sorted(job.dropped_fields) == ["spec.template.labels", "spec.template.spec.imagePullPolicy"]
    assert "labels" not in job.body["spec"]["template"]
    assert job.body["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_job_is_named_and_labelled_for_its_alert() -> None:
    e = reference_envelope()
    job = render(reference_definition(), e, JobRules(3600))
    meta = job.body["metadata"]
    assert job.name == meta["name"]
    assert re.fullmatch(r"openfero-kubequotaalmostfull-firing-[0-9a-f]{10}", job.name)
    assert meta["labels"] == {
        "app": "openfero",
        "app.kubernetes.io/managed-by": "openfero",
        "openfero.io/alertname": "KubeQuotaAlmostFull",
        "openfero.io/status": "firing",
        "openfero.io/fingerprint": e.alert.fingerprint,
        # the Go original's, beside openfero's
        "openfero.io/managed-by": "openfero",
        "openfero.io/alert": "KubeQuotaAlmostFull",
        "openfero.io/group-key": "g1f8n3qrkb649u",
    }
    assert meta["annotations"]["openfero.io/message-id"] == e.id
    assert job.body["spec"]["ttlSecondsAfterFinished"] == 3600


def test_one_name_per_occurrence() -> None:
    a = alert({"alertname": "A", "pod": "p"})
    again = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "A", "pod": "p"}, "status": "firing", "startsAt": "2025-01-01T00:00:00Z"}]})[0]
    assert a.id != again.id
    assert job_name("fix", a) == job_name("fix", again)  # a redelivery or repeat notification
    assert job_name("fix", a) != job_name("fix", alert({"alertname": "A", "pod": "p"}, status="resolved"))
    assert job_name("fix", a) != job_name("fix", alert({"alertname": "A", "pod": "p"}, starts="2025-01-02T00:00:00Z"))
    assert job_name("fix", a) != job_name("fix", alert({"alertname": "A", "pod": "q"}))


@pytest.mark.parametrize("base", ["x" * 200, "Openfero_Very.Long--Name" * 5, "---", "UPPER"])
def test_job_names_are_dns_labels_of_at_most_63(base: str) -> None:
    name = job_name(base, alert({"alertname": "A"}))
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


def test_a_long_definition_name_is_cut_to_leave_exactly_room_for_the_hash() -> None:
    name = job_name("x" * 200, alert({"alertname": "A"}))
    assert len(name) == 63 and re.fullmatch(r"x{52}-[0-9a-f]{10}", name)
    assert re.fullmatch(r"x{52}-[0-9a-f]{10}", job_name("x" * 52, alert({"alertname": "A"})))


def test_definition_env_wins_and_init_containers_get_labels_too() -> None:
    job = render(definition(SIMPLE_JOB), alert({"alertname": "A", "pod": "from-alert"}), JobRules(60))
    pod = job.body["spec"]["template"]["spec"]
    main_env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    init_env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
    assert main_env == {"OPENFERO_POD": "from-definition", "OPENFERO_ALERTNAME": "A"}
    assert init_env == {"OPENFERO_POD": "from-alert", "OPENFERO_ALERTNAME": "A"}
    assert job.dropped_fields == []


def test_definition_ttl_is_kept() -> None:
    text = SIMPLE_JOB.replace("spec:\n  template:", "spec:\n  ttlSecondsAfterFinished: 5\n  template:")
    assert render(definition(text), alert({"alertname": "A"}), JobRules(60)).body["spec"]["ttlSecondsAfterFinished"] == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [("KubeQuotaAlmostFull", "KubeQuotaAlmostFull"), ("a b/c", "a_b_c"), ("-x-", "x"), ("é" * 80, ""), ("y" * 70, "y" * 63), ("y" * 63, "y" * 63), ("y" * 62 + "-z", "y" * 62)],
)
def test_label_values_are_made_valid(value: str, expected: str) -> None:
    assert label_value(value) == expected
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", label_value(value))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Job\nspec: [unclosed", "not valid YAML"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}", "not a Job manifest"),
        ("just a string", "not a Job manifest"),
        ("kind: Job\nmetadata: {name: x}\nspec: {template: {spec: {containers: []}}}", "containers must be a non-empty list"),
        (SIMPLE_JOB.replace("value: from-definition", "value: 1"), r"env\[0\]\.value"),
        ("kind: Job\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, image: i}]}}, parallelism: many}", "spec.parallelism"),
    ],
)
def test_broken_definitions_are_render_errors_naming_the_definition(text: str, message: str) -> None:
    with pytest.raises(RenderError, match=message) as raised:
        render(definition(text), alert({"alertname": "A"}), JobRules(60))
    assert "ns/openfero-a-firing" in str(raised.value)


def test_rendering_leaves_the_definition_untouched() -> None:
    d = reference_definition()
    before = json.dumps(d.manifest, sort_keys=True)
    render(d, reference_envelope(), JobRules(60))
    assert json.dumps(d.manifest, sort_keys=True) == before


# -- running the same occurrence again after a cool-down -----------------------------------


def received_at(labels: dict[str, str], received: str, starts: str = "2025-01-01T00:00:00+00:00") -> Envelope:
    from datetime import datetime

    [e] = envelopes_from_webhook(
        {"alerts": [{"labels": labels, "status": "firing", "startsAt": starts}]}, now=datetime.fromisoformat(received)
    )
    return e


def test_rerun_after_gives_one_name_per_window_of_the_definition() -> None:
    annotated = Definition.parse("ns/openfero-a-firing", "A", SIMPLE_JOB, {"openfero.io/rerun-after": "1h"})
    labels = {"alertname": "A"}
    first = render(annotated, received_at(labels, "2025-01-01T00:10:00+00:00"), JobRules(60)).name
    same_window = render(annotated, received_at(labels, "2025-01-01T00:59:59+00:00"), JobRules(60)).name
    next_window = render(annotated, received_at(labels, "2025-01-01T04:10:00+00:00"), JobRules(60)).name
    assert first == same_window != next_window
    # without the annotation, Alertmanager's repeat four hours later finds the first Job
    plain = definition(SIMPLE_JOB)
    assert render(plain, received_at(labels, "2025-01-01T00:10:00+00:00"), JobRules(60)).name == render(plain, received_at(labels, "2025-01-01T04:10:00+00:00"), JobRules(60)).name


def test_rerun_windows_are_counted_from_the_alerts_start() -> None:
    # Received at the same time, an alert that started at midnight is in its fifth hour, one that started at 04:00 in its first
    assert rerun_window(received_at({"alertname": "A"}, "2025-01-01T04:10:00+00:00"), 3600) == 4
    assert rerun_window(received_at({"alertname": "A"}, "2025-01-01T04:10:00+00:00", starts="2025-01-01T04:00:00+00:00"), 3600) == 0
    assert rerun_window(received_at({"alertname": "A"}, "2025-01-01T04:10:00+00:00", starts="2025-01-01T03:10:00+00:00"), 3600) == 1


def test_rerun_after_may_sit_on_the_job_manifest_too() -> None:
    text = SIMPLE_JOB.replace("metadata: {name: fix}", "metadata: {name: fix, annotations: {openfero.io/rerun-after: 30m}}")
    labels = {"alertname": "A"}
    a = render(definition(text), received_at(labels, "2025-01-01T00:10:00+00:00"), JobRules(60)).name
    b = render(definition(text), received_at(labels, "2025-01-01T00:40:00+00:00"), JobRules(60)).name
    assert a != b


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    from shared.durations import parse_duration

    assert parse_duration(text) == seconds


def test_a_bad_rerun_after_is_a_render_error() -> None:
    annotated = Definition.parse("ns/openfero-a-firing", "A", SIMPLE_JOB, {"openfero.io/rerun-after": "soon"})
    with pytest.raises(RenderError, match="openfero.io/rerun-after"):
        render(annotated, alert({"alertname": "A"}), JobRules(60))


# -- the Go original's labels ----------------------------------------------------------------


def test_the_go_originals_job_labels_are_set() -> None:
    from dispatcher.naming import group_key_label
    from dispatcher.operarii import Operarius

    webhook = json.loads(reference_alert_bytes())
    envelope = envelopes_from_webhook(webhook)[0]
    labels = render(reference_definition(), envelope, JobRules(60)).body["metadata"]["labels"]
    assert labels["openfero.io/managed-by"] == "openfero"
    assert labels["openfero.io/alert"] == "KubeQuotaAlmostFull"
    assert labels["openfero.io/group-key"] == group_key_label(webhook["groupKey"])
    assert "openfero.io/operarius" not in labels  # a ConfigMap definition
    resource = {"metadata": {"name": "pod-restart", "namespace": "n"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}}
    labels = render(Operarius.from_resource(resource).definition, envelope, JobRules(60)).body["metadata"]["labels"]
    assert labels["openfero.io/operarius"] == "pod-restart"


# Expected values printed by Go: "g" + strconv.FormatUint(fnv.New64a() of the key, 36), as the Go original labels Jobs.
@pytest.mark.parametrize(
    ("group_key", "expected"),
    [
        ("", ""),
        ("a", "g2o0ongoiv4rrg"),
        ('{}/{alertname="KubeQuotaAlmostFull"}:{alertname="KubeQuotaAlmostFull"}', "g20b2ir5r44pps"),
        ('{}:{alertname="PodCrashLooping"}', "gqy9rxr2m3kfx"),
    ],
)
def test_the_group_key_label_is_the_go_originals_hash(group_key: str, expected: str) -> None:
    from dispatcher.naming import group_key_label

    assert group_key_label(group_key) == expected


# -- what rendering adds, drops and refuses, at its edges --------------------------------------


def test_the_outcome_finalizer_is_added_once_and_only_when_outcomes_are_tracked() -> None:
    assert "finalizers" not in render(definition(SIMPLE_JOB), alert({"alertname": "A"}), JobRules(60)).body["metadata"]
    tracked = render(definition(SIMPLE_JOB), alert({"alertname": "A"}), JobRules(60, track_outcomes=True))
    assert tracked.body["metadata"]["finalizers"] == ["openfero.io/outcome"]
    own = SIMPLE_JOB.replace("metadata: {name: fix}", "metadata: {name: fix, finalizers: [example.com/keep, openfero.io/outcome]}")
    assert render(definition(own), alert({"alertname": "A"}), JobRules(60, track_outcomes=True)).body["metadata"]["finalizers"] == [
        "example.com/keep",
        "openfero.io/outcome",
    ]


def test_fields_named_as_python_names_them_are_dropped_and_reported() -> None:
    text = SIMPLE_JOB.replace("restartPolicy: Never", "restartPolicy: Never\n      service_account_name: other").replace(
        "image: busybox\n        env", "image: busybox\n        image_pull_policy: Always\n        env"
    )
    job = render(definition(text), alert({"alertname": "A"}), JobRules(60))
    assert sorted(job.dropped_fields) == ["spec.template.spec.containers[0].image_pull_policy", "spec.template.spec.service_account_name"]
    pod = job.body["spec"]["template"]["spec"]
    assert "service_account_name" not in pod and "image_pull_policy" not in pod["containers"][0]
    assert pod["restartPolicy"] == "Never" and pod["containers"][0]["image"] == "busybox"


def test_a_job_without_an_api_version_gets_batch_v1() -> None:
    assert render(definition(SIMPLE_JOB.replace("apiVersion: batch/v1\n", "")), alert({"alertname": "A"}), JobRules(60)).body["apiVersion"] == "batch/v1"


@pytest.mark.parametrize(
    ("pod", "account"),
    [({"serviceAccountName": "a", "serviceAccount": "b"}, "a"), ({"serviceAccount": "b"}, "b"), ({}, "default"), ({"serviceAccountName": ""}, "default")],
)
def test_the_service_account_is_the_name_else_its_alias_else_default(pod: dict, account: str) -> None:
    assert service_account({"spec": {"template": {"spec": pod}}}) == account


def test_a_rendered_job_may_have_1_mib_and_no_more() -> None:
    padded = SIMPLE_JOB.replace("metadata: {name: fix}", "metadata: {name: fix, annotations: {pad: PAD}}")
    base = len(orjson.dumps(render(definition(padded.replace("PAD", "''")), alert({"alertname": "A"}), JobRules(60)).body))
    room = MAX_RENDERED_BYTES - base
    assert len(orjson.dumps(render(definition(padded.replace("PAD", "x" * room)), alert({"alertname": "A"}), JobRules(60)).body)) == MAX_RENDERED_BYTES
    with pytest.raises(Refused, match="1048577 bytes, over the limit of 1048576, because of the alert's labels"):
        render(definition(padded.replace("PAD", "x" * (room + 1))), alert({"alertname": "A"}), JobRules(60))


def test_rerun_windows_without_readable_times_count_from_the_epoch() -> None:
    from shared.envelope import Alert, Group

    assert rerun_window(Envelope("i", "", Alert("firing", {}), Group()), 1) == 0
    assert rerun_window(Envelope("i", "1970-01-01T00:00:10+00:00", Alert("firing", {}), Group()), 1) == 10


def test_whose_doing_an_oversized_job_is_decides_refused_or_render_error() -> None:
    # Both containers get the label as OPENFERO_ALERTNAME: the part of the size that is the alert's
    injected = 2 * len(orjson.dumps([{"name": "OPENFERO_ALERTNAME", "value": "A"}]))
    padded = SIMPLE_JOB.replace("metadata: {name: fix}", "metadata: {name: fix, annotations: {pad: PAD}}")
    base = len(orjson.dumps(render(definition(padded.replace("PAD", "''")), alert({"alertname": "A"}), JobRules(60)).body))
    room = MAX_RENDERED_BYTES - base
    with pytest.raises(Refused):  # without the labels, exactly at the limit
        render(definition(padded.replace("PAD", "x" * (room + injected))), alert({"alertname": "A"}), JobRules(60))
    with pytest.raises(RenderError, match=f"{MAX_RENDERED_BYTES + injected + 1} bytes, over the limit of {MAX_RENDERED_BYTES}$"):
        render(definition(padded.replace("PAD", "x" * (room + injected + 1))), alert({"alertname": "A"}), JobRules(60))


def test_a_forced_run_gets_its_own_name_and_says_so() -> None:
    plain = render(definition(SIMPLE_JOB), alert({"alertname": "A"}), JobRules(60))
    forced = render(definition(SIMPLE_JOB), alert({"alertname": "A"}), JobRules(60), run_id="r1")
    assert forced.name != plain.name and forced.name != render(definition(SIMPLE_JOB), alert({"alertname": "A"}), JobRules(60), run_id="r2").name
    assert forced.body["metadata"]["annotations"]["openfero.io/run-id"] == "r1"
    assert "openfero.io/run-id" not in plain.body["metadata"]["annotations"]


def test_an_alert_received_before_it_started_is_in_the_window_before_the_first() -> None:
    # clocks apart: Alertmanager's startsAt 1 s after the dispatcher's receive time
    assert rerun_window(received_at({"alertname": "A"}, "2025-01-01T00:00:00+00:00", starts="2025-01-01T00:00:01+00:00"), 3600) == -1


@pytest.mark.parametrize(
    ("path", "expanded"),
    [
        ("spec.template.spec.containers[0].command[1]", True),
        ("spec.template.spec.initContainers[2].args[0]", True),
        ("spec.template.spec.containers[0].env[3].value", True),
        ("spec.template.spec.containers[0].volumeMounts[0].subPathExpr", True),
        ("spec.template.spec.containers[0].livenessProbe.exec.command[0]", True),
        ("spec.template.spec.containers[0].image", False),
        ("spec.template.spec.containers[0].env[3].name", False),
        ("metadata.annotations.x", False),
        ("spec.template.spec.containers[0].command[1]x", False),
    ],
)
def test_the_fields_the_kubelet_expands(path: str, expanded: bool) -> None:
    assert expanded_by_kubelet(path) is expanded


@pytest.mark.parametrize(
    "field",
    ["metadata: {name: fix, namespace: '{{ .Labels.ns }}'}", "serviceAccountName: '{{ .Labels.sa }}'", "serviceAccount: '{{ .Labels.sa }}'"],
)
def test_where_and_as_whom_a_job_runs_may_not_be_templates(field: str) -> None:
    text = SIMPLE_JOB.replace("metadata: {name: fix}", field) if field.startswith("metadata") else SIMPLE_JOB.replace("restartPolicy: Never", "restartPolicy: Never\n      " + field)
    with pytest.raises(RenderError, match="may not be a template"):
        render(definition(text), alert({"alertname": "A", "ns": "x", "sa": "y"}), JobRules(60))


def test_a_job_without_a_name_is_named_after_its_configmap_and_gets_a_day_to_live_by_default() -> None:
    job = render(definition(SIMPLE_JOB.replace("metadata: {name: fix}", "metadata: {}")), alert({"alertname": "A"}), JobRules())
    assert re.fullmatch(r"openfero-a-firing-[0-9a-f]{10}", job.name)
    assert job.body["spec"]["ttlSecondsAfterFinished"] == 86400


def test_finalizers_that_are_not_a_list_fail_the_jobs_validation() -> None:
    text = SIMPLE_JOB.replace("metadata: {name: fix}", "metadata: {name: fix, finalizers: not-a-list}")
    with pytest.raises(RenderError, match="finalizers"):
        render(definition(text), alert({"alertname": "A"}), JobRules(60, track_outcomes=True))
