"""The silence rules, without I/O: what a definition asks for, the silence's matchers, end and marker, and what an outcome does to it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from dispatcher import silences as rules
from dispatcher.operarii import Operarius
from dispatcher.outcomes import DELETED, FAILED, SUCCEEDED
from shared.settings import AlertmanagerSettings, SettingsError
from tests.conftest import ROOT

NOW = datetime(2026, 11, 26, 6, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("own", "definition", "expected"),
    [
        ({}, {}, None),  # off by default
        ({}, {"openfero.io/silence": "false"}, None),
        ({}, {"openfero.io/silence": "true"}, rules.Wanted("keep")),
        ({}, {"openfero.io/silence": "True", "openfero.io/silence-after-success": "Expire"}, rules.Wanted("expire")),
        # the Job's own annotation speaks for that Job, over the ConfigMap's
        ({"openfero.io/silence": "false"}, {"openfero.io/silence": "true"}, None),
        ({"openfero.io/silence": "yes", "openfero.io/silence-after-success": "expire"}, {}, rules.Wanted("expire")),
    ],
)
def test_a_definition_asks_for_a_silence_with_an_annotation(own: dict, definition: dict, expected) -> None:
    manifest = {"kind": "Job", "metadata": {"annotations": own}}
    assert rules.wanted(manifest, definition) == expected


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"openfero.io/silence": "sometimes"}, "not true or false"),
        ({"openfero.io/silence": "true", "openfero.io/silence-after-success": "later"}, "not keep or expire"),
        ({"openfero.io/silence": "{{ .Labels.quiet }}"}, "may not be a template"),
    ],
)
def test_a_request_that_cannot_be_understood_is_refused(annotations: dict, message: str) -> None:
    with pytest.raises(rules.InvalidSilenceRequest, match=message):
        rules.wanted({"metadata": {"annotations": annotations}}, {})


def test_an_operarius_asks_with_its_silence_field() -> None:
    shipped = yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text())
    assert rules.wanted(Operarius.from_resource(shipped).definition.manifest, Operarius.from_resource(shipped).definition.annotations) is None
    shipped["spec"]["silence"] = {"enabled": True, "afterSuccess": "expire"}
    definition = Operarius.from_resource(shipped).definition
    assert rules.wanted(definition.manifest, definition.annotations) == rules.Wanted("expire")
    # the field wins over an annotation on the Operarius
    shipped["metadata"]["annotations"] = {"openfero.io/silence": "true"}
    shipped["spec"]["silence"] = {"enabled": False}
    definition = Operarius.from_resource(shipped).definition
    assert rules.wanted(definition.manifest, definition.annotations) is None


def test_the_matchers_are_equality_on_every_label_as_sent() -> None:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "shop", "NAMESPACE": "other", "pod": 'web-.*|"x"\n', "service.name": "api"}
    found = rules.matchers(labels)
    assert [(m["name"], m["value"]) for m in found] == sorted(labels.items())  # names and values untouched
    assert all(m["isRegex"] is False and m["isEqual"] is True for m in found)


def test_the_silence_ends_at_the_jobs_deadline_plus_the_margin_else_the_setting() -> None:
    assert rules.lifetime_s({"spec": {"activeDeadlineSeconds": 600}}, 900, 300) == 900
    assert rules.lifetime_s({"spec": {}}, 900, 300) == 1200
    assert rules.lifetime_s({"spec": {"activeDeadlineSeconds": True}}, 900, 0) == 900  # not a number of seconds
    body = rules.body({"alertname": "A"}, "openfero-jobs", "fix-1234567890", "default/openfero-a-firing/A", NOW, 660)
    assert body["endsAt"] == "2026-11-26T06:11:00.000000Z"
    # back-dated: Alertmanager moves it to its own now, so a clock of ours a little ahead still makes it active
    assert body["startsAt"] == "2026-11-26T05:59:00.000000Z"
    assert body["createdBy"] == "openfero"
    assert body["comment"].endswith("[openfero.io/job=openfero-jobs/fix-1234567890]")
    assert "openfero-jobs/fix-1234567890" in body["comment"] and "default/openfero-a-firing/A" in body["comment"]


def test_only_openferos_silence_with_the_jobs_marker_is_found_again() -> None:
    body = rules.body({"alertname": "A"}, "jobs", "fix-1", "d", NOW, 60)
    ours = {**body, "id": "s1", "status": {"state": "active"}}
    assert rules.is_ours(ours, "jobs", "fix-1") and rules.holding(ours)
    assert not rules.is_ours(ours, "jobs", "fix-12")  # the marker is whole: a longer name is another Job
    assert not rules.is_ours(ours, "other", "fix-1")
    assert not rules.is_ours({**ours, "createdBy": "someone"}, "jobs", "fix-1")
    assert not rules.holding({**ours, "status": {"state": "expired"}})
    assert rules.holding({**ours, "status": {"state": "pending"}})


def test_the_job_carries_its_silence_and_the_leader_reads_it_back() -> None:
    held = rules.Held("s1", "http://am-0:9093", NOW + timedelta(minutes=20), "keep")
    annotations = held.annotations()
    assert annotations == {
        "openfero.io/silence-id": "s1",
        "openfero.io/silence-alertmanager": "http://am-0:9093",
        "openfero.io/silence-ends-at": "2026-11-26T06:20:00.000000Z",
        "openfero.io/silence-after-success": "keep",
    }
    assert rules.Held.of(annotations) == held
    assert rules.Held.of({}) is None


@pytest.mark.parametrize(
    ("outcome", "after_success", "kept"),
    [(SUCCEEDED, "keep", True), (SUCCEEDED, "expire", False), (FAILED, "keep", False), (DELETED, "keep", False)],
)
def test_only_a_success_whose_definition_says_keep_keeps_the_silence(outcome: str, after_success: str, kept: bool) -> None:
    assert rules.keeps(outcome, rules.Held("s", "", NOW, after_success)) is kept


def test_a_silence_already_over_was_expired_early_or_ended_at_its_end() -> None:
    held = rules.Held("s", "", NOW, "keep")
    assert rules.already_over({"endsAt": "2026-11-26T05:50:00.000Z"}, held) == rules.EXPIRED
    assert rules.already_over({"endsAt": "2026-11-26T06:00:00.300Z"}, held) == rules.ENDED


def test_alertmanager_urls_are_checked_when_read() -> None:
    settings = AlertmanagerSettings(urls=" http://am-0:9093/ , https://am-1.example:9093/prefix ")
    assert settings.url_list() == ("http://am-0:9093", "https://am-1.example:9093/prefix")
    for bad, message in (("am-0:9093", "not an http"), ("http://user:pw@am-0:9093", "carries credentials"), ("http://am?x=1", "query")):
        with pytest.raises(SettingsError, match=message):
            AlertmanagerSettings(urls=bad).url_list()
    with pytest.raises(SettingsError, match="none, basic or bearer"):
        AlertmanagerSettings(auth_mode="digest")
    with pytest.raises(SettingsError, match="both"):
        AlertmanagerSettings(cert_file="/c.pem")
