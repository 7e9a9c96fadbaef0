"""Choosing an Operarius for an alert: selectors, matchers, priority, ties, disabled. No I/O."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dispatcher.catalog import Catalog
from dispatcher.operarii import InvalidOperarius, Operarius, select
from dispatcher.rendering import JobRules, render
from shared.envelope import envelopes_from_webhook

DATA = Path(__file__).parent / "data" / "go-original"


def alert(labels: dict[str, str], status: str = "firing"):
    return envelopes_from_webhook({"alerts": [{"labels": labels, "status": status, "startsAt": "2025-01-01T00:00:00Z"}]})[0].alert


def operarius(name: str, namespace: str = "openfero", **spec) -> Operarius:
    spec.setdefault("jobTemplate", {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})
    return Operarius.from_resource({"metadata": {"name": name, "namespace": namespace}, "spec": spec})


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("severity=critical", {"severity": "critical"}, True),
        ("severity=critical", {"severity": "warning"}, False),
        ("severity!=critical", {"severity": "warning"}, True),
        ("severity!=critical", {}, True),
        ('namespace=~"prod-.*"', {"namespace": "prod-eu"}, True),
        ('namespace=~"prod-.*"', {"namespace": "xprod-eu"}, False),  # anchored
        ("namespace=~prod", {"namespace": "production"}, False),  # anchored at the end too
        ("namespace!~prod-.*", {"namespace": "dev"}, True),
        ("team=", {}, True),  # a missing label is empty
        ('msg="a \\"quoted\\" value"', {"msg": 'a "quoted" value'}, True),
    ],
)
def test_matchers_are_alertmanagers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert operarius("o", alertSelector={"matchers": [text]}).matches(alert(labels)) is expected


@pytest.mark.parametrize("text", ["severity", "=x", "a=~(unclosed"])
def test_bad_matchers_are_refused(text: str) -> None:
    with pytest.raises(InvalidOperarius):
        operarius("o", alertSelector={"matchers": [text]})


def test_selector_fields_all_have_to_match() -> None:
    o = operarius("o", alertSelector={"alertname": "A", "status": "firing", "labels": {"team": "web"}, "matchers": ["severity=~crit.*"]})
    assert o.matches(alert({"alertname": "A", "team": "web", "severity": "critical"}))
    assert not o.matches(alert({"alertname": "A", "team": "web", "severity": "critical"}, status="resolved"))
    assert not o.matches(alert({"alertname": "B", "team": "web", "severity": "critical"}))
    assert not o.matches(alert({"alertname": "A", "team": "db", "severity": "critical"}))
    assert not o.matches(alert({"alertname": "A", "team": "web", "severity": "info"}))


def test_an_empty_selector_matches_every_alert() -> None:
    assert operarius("all").matches(alert({"alertname": "Anything"}))


def test_highest_priority_wins_and_ties_go_by_namespace_then_name() -> None:
    a = alert({"alertname": "A"})
    low = operarius("low", priority=10)
    high = operarius("high", priority=80)
    tie_b = operarius("b", priority=80)
    tie_other_ns = operarius("a", namespace="zzz", priority=80)
    assert select([low, high], a) is high
    assert select([tie_b, high, tie_other_ns, low], a) is tie_b  # "openfero/b" before "openfero/high" before "zzz/a"
    assert select([tie_other_ns, low], a) is tie_other_ns


def test_disabled_operarii_are_never_chosen() -> None:
    a = alert({"alertname": "A"})
    off = operarius("off", priority=100, enabled=False)
    on = operarius("on", priority=1)
    assert select([off, on], a) is on
    assert select([off], a) is None


def test_an_operarius_wins_over_a_configmap_and_the_configmap_is_the_fallback() -> None:
    catalog = Catalog()
    job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: from-configmap}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}"
    catalog.replace_configmaps([{"metadata": {"name": "openfero-a-firing", "namespace": "n"}, "data": {"A": job}}])
    catalog.replace_operarii([{"metadata": {"name": "only-web", "namespace": "n"}, "spec": {"alertSelector": {"alertname": "A", "labels": {"team": "web"}}, "jobTemplate": {"spec": {}}}}])
    chosen = catalog.lookup(alert({"alertname": "A", "team": "web"}))
    assert chosen.operarius == ("n", "only-web")
    fallback = catalog.lookup(alert({"alertname": "A", "team": "db"}))
    assert fallback.operarius is None and fallback.definition.key == "A"


def test_a_broken_operarius_is_ignored_and_the_others_still_work() -> None:
    catalog = Catalog()
    catalog.replace_operarii(
        [
            {"metadata": {"name": "broken", "namespace": "n"}, "spec": {"alertSelector": {"matchers": ["nonsense"]}}},
            {"metadata": {"name": "fine", "namespace": "n"}, "spec": {"alertSelector": {"alertname": "A"}, "jobTemplate": {"spec": {}}}},
        ]
    )
    assert catalog.lookup(alert({"alertname": "A"})).operarius == ("n", "fine")


def test_the_go_originals_operarii_render_unchanged() -> None:
    webhook = json.loads((DATA / "kubepodcrashlooping.alert.json").read_text())
    envelope = envelopes_from_webhook(webhook)[0]
    starter = Operarius.from_resource(yaml.safe_load((DATA / "kubepodcrashlooping.operarius.yaml").read_text()))
    assert (starter.priority, starter.alertname, starter.status) == (80, "KubePodCrashLooping", "firing")
    assert starter.matches(envelope.alert)
    job = render(starter.definition, envelope, JobRules(60))
    container = job.body["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "OPENFERO_POD", "value": "test-crashloop-pod"} in container["env"]
    assert job.body["spec"]["template"]["spec"]["serviceAccountName"] == "openfero-pod-restarter"
    assert job.body["spec"]["backoffLimit"] == 2 and job.body["spec"]["ttlSecondsAfterFinished"] == 600
    assert job.name.startswith("pod-crashloop-restart-")
    assert job.dropped_fields == []

    templated = Operarius.from_resource(yaml.safe_load((DATA / "podrestart-templated.operarius.yaml").read_text()))
    crash = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "PodCrashLooping", "pod": "web-1", "namespace": "shop", "container": "main"}, "status": "firing"}]})[0]
    assert templated.matches(crash.alert) and not templated.matches(envelope.alert)
    job = render(templated.definition, crash, JobRules(60))
    env = {e["name"]: e["value"] for e in job.body["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["POD_NAME"], env["POD_NAMESPACE"], env["CONTAINER_NAME"]) == ("web-1", "shop", "main")
    assert env["OPENFERO_POD"] == "web-1"
    assert job.body["metadata"]["labels"]["operarius"] == "podcrashlooping"
    assert job.body["spec"]["activeDeadlineSeconds"] == 120


def test_the_original_deduplication_window_becomes_rerun_after() -> None:
    # deduplication {enabled, ttl: 600}: one run per occurrence per 600 s window
    templated = Operarius.from_resource(yaml.safe_load((DATA / "podrestart-templated.operarius.yaml").read_text()))
    assert templated.definition.annotations == {"openfero.io/rerun-after": "600s"}
    assert operarius("x", deduplication={"enabled": False, "ttl": 600}).definition.annotations == {}


@pytest.mark.parametrize(
    ("deduplication", "rerun_after"),
    [
        ({"enabled": True, "ttl": 1}, "1s"),
        ({"enabled": True, "ttl": "90"}, "90s"),
        ({"enabled": True, "ttl": 0}, None),
        ({"enabled": True}, None),
        ({"enabled": False, "ttl": 600}, None),
        ({"ttl": 600}, None),
    ],
)
def test_deduplication_becomes_rerun_after_only_when_enabled_with_a_window(deduplication: dict, rerun_after: str | None) -> None:
    assert operarius("x", deduplication=deduplication).definition.annotations.get("openfero.io/rerun-after") == rerun_after


def test_the_job_is_named_after_its_template_else_after_the_operarius() -> None:
    named = {"metadata": {"name": "restart-pod", "labels": {"team": "web"}}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    chosen = operarius("pod-restarter", jobTemplate=named).definition.manifest["metadata"]
    assert chosen == {"name": "restart-pod", "labels": {"team": "web"}}
    assert operarius("pod-restarter").definition.manifest["metadata"] == {"name": "pod-restarter"}
    job = render(operarius("pod-restarter", jobTemplate=named).definition, envelopes_from_webhook({"alerts": [{"labels": {"alertname": "A"}}]})[0], JobRules(60))
    assert job.name.startswith("restart-pod-")


def _sized(total: int) -> list[str]:
    """Five matchers compiling to ``total`` RE2 instructions (8000 or 8001)."""
    return ['a=~"[a-z]{999}[a-z]{999}"'] * 3 + [f'a=~"[a-z]{{1000}}[a-z]{{{total - 8000 + 994}}}"', 'a=~"x"']


def test_an_operarius_may_have_64_matchers_and_8000_re2_instructions_and_no_more() -> None:
    assert len(operarius("x", alertSelector={"matchers": ["a=b"] * 64}).matchers) == 64
    with pytest.raises(InvalidOperarius, match="65 matchers"):
        operarius("x", alertSelector={"matchers": ["a=b"] * 65})
    assert len(operarius("x", alertSelector={"matchers": _sized(8000)}).matchers) == 5
    with pytest.raises(InvalidOperarius, match="8001 RE2 instructions"):
        operarius("x", alertSelector={"matchers": _sized(8001)})


def test_an_operarius_without_a_priority_has_priority_0() -> None:
    # named so that a tie would choose the wrong one
    unset, one, minus_one = operarius("m-unset"), operarius("z-one", priority=1), operarius("a-minus-one", priority=-1)
    assert select([unset, one], alert({"alertname": "A"})) is one
    assert select([unset, minus_one], alert({"alertname": "A"})) is unset


@pytest.mark.parametrize(
    ("silence", "annotations"),
    [
        ({"enabled": True, "afterSuccess": "5m"}, {"openfero.io/silence": "true", "openfero.io/silence-after-success": "5m"}),
        ({"enabled": False}, {"openfero.io/silence": "false"}),
        ({"enabled": "yes"}, {"openfero.io/silence": "false"}),  # only true is true, as the CRD's boolean
        ({"afterSuccess": None}, {}),
        ("on", {}),
    ],
)
def test_spec_silence_becomes_the_silence_annotations(silence: object, annotations: dict[str, str]) -> None:
    assert operarius("x", silence=silence).definition.annotations == annotations


def test_a_job_template_may_hold_100000_values_and_no_more() -> None:
    # The template, its spec, the list and the numbers in it: 3 + n values
    assert operarius("x", jobTemplate={"spec": {"x": [0] * 99_997}}).definition.manifest["spec"]["x"][-1] == 0
    with pytest.raises(InvalidOperarius, match="over 100000 values"):
        operarius("x", jobTemplate={"spec": {"x": [0] * 99_998}})
