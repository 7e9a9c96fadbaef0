"""Reading Alertmanager webhooks into envelopes, and the envelope's round trip."""

from __future__ import annotations

import json

import pytest

from shared.envelope import Envelope, InvalidEnvelope, InvalidWebhook, envelopes_from_webhook, fingerprint
from tests.conftest import reference_alert_bytes


def test_fingerprint_matches_prometheus_label_set_fingerprint() -> None:
    # Vectors from Prometheus' own tests of its label-set fingerprint.
    assert int(fingerprint({}), 16) == 14695981039346656037
    assert int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16) == 5799056148416392346
    assert fingerprint({"a": "b"}) != fingerprint({"a": "c"})
    assert len(fingerprint({"service.name": "café"})) == 16


def test_reference_webhook_becomes_one_envelope_with_group_context() -> None:
    [e] = envelopes_from_webhook(json.loads(reference_alert_bytes()))
    assert e.alert.status == "firing"  # the group's, as the alert has none
    assert e.alert.labels["zone"] == "internal"
    assert e.alert.endsAt == "0001-01-01T00:00:00Z"  # spelled EndsAt in the reference
    assert e.alert.startsAt == "2021-10-25T12:01:24.29524738Z"
    assert e.alert.fingerprint == fingerprint(e.alert.labels)
    assert e.group.receiver == "openfero"
    assert e.group.groupLabels["zone"] == "dmz"
    assert e.group.commonAnnotations["summary"] == "Namespace quota is going to be full."
    assert e.group.externalURL == "http://alertmanager.example.com"
    assert e.schema == 1 and len(e.id) == 32 and e.receivedAt.endswith("+00:00")


def test_field_names_match_in_any_case_and_a_sent_fingerprint_is_kept() -> None:
    payload = {
        "STATUS": "firing",
        "Alerts": [{"Labels": {"alertname": "A"}, "Status": "resolved", "FINGERPRINT": "00000000000000ff"}],
        "groupkey": "g",
        "TruncatedAlerts": 3,
    }
    [e] = envelopes_from_webhook(payload)
    assert e.alert.status == "resolved"  # the alert's own status wins over the group's
    assert e.alert.fingerprint == "00000000000000ff"
    assert e.group.groupKey == "g" and e.group.truncatedAlerts == 3


def test_status_missing_everywhere_follows_ends_at() -> None:
    payload = {
        "alerts": [
            {"labels": {"alertname": "A"}, "endsAt": "2001-01-01T00:00:00Z"},
            {"labels": {"alertname": "B"}, "endsAt": "0001-01-01T00:00:00Z"},
            {"labels": {"alertname": "C"}},
        ]
    }
    assert [e.alert.status for e in envelopes_from_webhook(payload)] == ["resolved", "firing", "firing"]


def test_every_alert_gets_its_own_message_id() -> None:
    payload = {"alerts": [{"labels": {"n": str(i)}} for i in range(50)]}
    assert len({e.id for e in envelopes_from_webhook(payload)}) == 50


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "body: must be a JSON object"),
        ("text", "body: must be a JSON object"),
        ({"alerts": {}}, "alerts: must be a list"),
        ({"alerts": [{}]}, "alerts[0].labels: required"),
        ({"alerts": ["x"]}, "alerts[0]: must be an object"),
        ({"alerts": [{"labels": {"a": 1}}]}, "alerts[0].labels.a: must be a string, got int"),
        ({"alerts": [{"labels": {"a": "b"}}, {"labels": {"a": None}}]}, "alerts[1].labels.a: must be a string"),
        ({"alerts": [{"labels": {}, "annotations": {"x": []}}]}, "alerts[0].annotations.x: must be a string"),
        ({"alerts": [], "truncatedAlerts": "3"}, "truncatedAlerts: must be an integer"),
    ],
)
def test_unusable_webhooks_are_refused_naming_the_field(payload: object, message: str) -> None:
    with pytest.raises(InvalidWebhook, match=message.replace("[", r"\[").replace("]", r"\]")):
        envelopes_from_webhook(payload)


def test_missing_alerts_means_no_alerts() -> None:
    assert envelopes_from_webhook({"version": "4"}) == []


def test_envelope_round_trips_through_json() -> None:
    [e] = envelopes_from_webhook(json.loads(reference_alert_bytes()))
    assert Envelope.from_json(e.to_json()) == e


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"schema": 99}', b'{"schema": 1, "id": "x"}', b'{"schema":1,"id":"x","receivedAt":"t","alert":{"labels":{"a":1}},"group":{}}', b"\xff\xfe"],
)
def test_unreadable_messages_raise_invalid_envelope(body: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_json(body)
