"""Reading Alertmanager webhooks into envelopes, and the envelope's round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.envelope import Alert, Envelope, Group, InvalidEnvelope, InvalidWebhook, envelopes_from_webhook, fingerprint
from tests.conftest import reference_alert_bytes


def test_fingerprint_matches_prometheus_label_set_fingerprint() -> None:
    # Vectors from Prometheus' own tests of its label-set fingerprint.
    assert int(fingerprint({}), 16) == 14695981039346656037
    assert int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16) == 5799056148416392346
    assert fingerprint({"a": "b"}) != fingerprint({"a": "c"})
    # FNV-1a 64 over b"alertname\xffA\xff": the top bit set, as it is for half of all label sets
    assert fingerprint({"alertname": "A"}) == "d2c6efc389df0927"
    assert len(fingerprint({"service.name": "café"})) == 16


def test_reference_webhook_becomes_one_envelope_with_group_context() -> None:
    [e] = envelopes_from_webhook(json.loads(reference_alert_bytes()))
    assert e.alert.status == "firing"  # the group's, as the alert has none
    assert e.alert.labels["zone"] == "internal"
    assert e.alert.ends_at == "0001-01-01T00:00:00Z"  # spelled EndsAt in the reference
    assert e.alert.starts_at == "2021-10-25T12:01:24.29524738Z"
    assert e.alert.fingerprint == fingerprint(e.alert.labels)
    assert e.group.receiver == "openfero"
    assert e.group.group_labels["zone"] == "dmz"
    assert e.group.common_annotations["summary"] == "Namespace quota is going to be full."
    assert e.group.external_url == "http://alertmanager.example.com"
    assert e.schema == 2 and len(e.id) == 32 and e.received_at.endswith("+00:00")


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
    assert e.group.group_key == "g" and e.group.truncated_alerts == 3


def test_an_alert_without_a_status_takes_the_webhooks() -> None:
    payload = {"status": "resolved", "alerts": [{"labels": {"alertname": "A"}, "endsAt": "0001-01-01T00:00:00Z"}, {"labels": {"alertname": "B"}, "status": "firing"}]}
    assert [e.alert.status for e in envelopes_from_webhook(payload)] == ["resolved", "firing"]


def test_the_alerts_generator_url_and_times_are_kept() -> None:
    alert = {"labels": {"alertname": "A"}, "startsAt": "s", "endsAt": "e", "generatorURL": "http://prom/graph?g0.expr=up"}
    [e] = envelopes_from_webhook({"alerts": [alert]})
    assert (e.alert.starts_at, e.alert.ends_at, e.alert.generator_url) == ("s", "e", "http://prom/graph?g0.expr=up")


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


def test_a_message_names_the_group_entries_its_alert_shares_and_carries_the_others() -> None:
    # The reference webhook's groupLabels say zone=dmz; its alert has zone=internal.
    [e] = envelopes_from_webhook(json.loads(reference_alert_bytes()))
    wire = json.loads(e.to_json())
    assert wire["schema"] == 2
    assert wire["group"]["groupLabels"] == ["alertname", "severity", "stage", ["zone", "dmz"]]
    assert ["zone", "dmz"] in wire["group"]["commonLabels"] and "cluster" in wire["group"]["commonLabels"]
    assert wire["group"]["commonAnnotations"] == ["runbook_url", "summary"]
    # The reader restores the maps as sent, in their order.
    back = Envelope.from_json(e.to_json())
    assert back.group.group_labels == {"alertname": "KubeQuotaAlmostFull", "severity": "info", "stage": "dev", "zone": "dmz"}
    assert list(back.group.common_labels) == list(e.group.common_labels)
    assert back == e


def test_a_large_common_annotation_is_named_in_each_message_not_copied() -> None:
    # Given 40 alerts sharing a common annotation of 100 kB (the 37x webhook)
    big = "x" * 100_000
    payload = {"commonAnnotations": {"runbook": big}, "alerts": [{"labels": {"n": str(i)}, "annotations": {"runbook": big}} for i in range(40)]}
    envelopes = envelopes_from_webhook(payload)
    # Then each message holds the annotation once, as the alert's own
    assert all(len(e.to_json()) < 100_500 for e in envelopes)
    assert Envelope.from_json(envelopes[0].to_json()).group.common_annotations == {"runbook": big}


# A message as openfero writes it today (schema 2), every field set; messages like it wait in queues.
SCHEMA_2 = (
    b'{"schema":2,"id":"0123456789abcdef0123456789abcdef","receivedAt":"2026-11-25T02:01:30.000000+00:00",'
    b'"alert":{"status":"resolved","labels":{"alertname":"A","zone":"internal"},"annotations":{"summary":"s","runbook":"r"},'
    b'"startsAt":"2026-11-25T01:59:00Z","endsAt":"2026-11-25T02:01:00Z","generatorURL":"http://prom/graph?g0.expr=up",'
    b'"fingerprint":"80000000000000ff"},'
    b'"group":{"version":"4","status":"firing","receiver":"openfero","groupKey":"{}:{alertname=\\"A\\"}",'
    b'"externalURL":"http://am:9093","truncatedAlerts":2,"groupLabels":["alertname"],'
    b'"commonLabels":["alertname",["zone","dmz"]],"commonAnnotations":["summary"]}}'
)


def test_a_message_in_todays_format_is_read_field_by_field_and_written_back_byte_for_byte() -> None:
    e = Envelope.from_json(SCHEMA_2)
    assert (e.schema, e.id, e.received_at) == (2, "0123456789abcdef0123456789abcdef", "2026-11-25T02:01:30.000000+00:00")
    assert e.alert == Alert(
        status="resolved",
        labels={"alertname": "A", "zone": "internal"},
        annotations={"summary": "s", "runbook": "r"},
        starts_at="2026-11-25T01:59:00Z",
        ends_at="2026-11-25T02:01:00Z",
        generator_url="http://prom/graph?g0.expr=up",
        fingerprint="80000000000000ff",
    )
    assert e.group == Group(
        version="4",
        status="firing",
        receiver="openfero",
        group_key='{}:{alertname="A"}',
        group_labels={"alertname": "A"},
        common_labels={"alertname": "A", "zone": "dmz"},
        common_annotations={"summary": "s"},
        external_url="http://am:9093",
        truncated_alerts=2,
    )
    assert Envelope(e.id, e.received_at, e.alert, e.group).to_json() == SCHEMA_2


def test_a_message_is_read_by_its_own_field_names_not_as_a_webhook() -> None:
    # Alertmanager's webhook matches names in any case; a message has one spelling
    body = b'{"schema":2,"id":"x","receivedAt":"t","alert":{"Labels":{"alertname":"A"}},"group":{}}'
    with pytest.raises(InvalidEnvelope, match="alert.labels"):
        Envelope.from_json(body)
    e = Envelope.from_json(b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{"a":"b"},"StartsAt":"s"},"group":{"Status":"firing"}}')
    assert e.alert.starts_at == "" and e.group.status == ""


def test_a_message_written_by_hand_without_status_or_fingerprint_gets_alertmanagers() -> None:
    e = Envelope.from_json(b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{"a":"b"},"endsAt":"2001-01-01T00:00:00Z"},"group":{"status":"firing"}}')
    assert e.alert.status == "resolved"  # endsAt has passed; a message does not take its group's status
    assert e.alert.fingerprint == fingerprint({"a": "b"})


# A message as openfero 0.1 wrote it (schema 1): the group maps whole.
SCHEMA_1 = (
    b'{"schema":1,"id":"0f0e","receivedAt":"2026-11-25T02:00:00.000000+00:00",'
    b'"alert":{"status":"firing","labels":{"alertname":"A","zone":"internal"},"annotations":{"s":"t"},'
    b'"startsAt":"2026-11-25T01:59:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"00000000000000ff"},'
    b'"group":{"version":"4","status":"firing","receiver":"openfero","groupKey":"{}:{alertname=\\"A\\"}",'
    b'"groupLabels":{"alertname":"A"},"commonLabels":{"alertname":"A","zone":"dmz"},"commonAnnotations":{"s":"t"},'
    b'"externalURL":"http://am","truncatedAlerts":0}}'
)


def test_schema_1_messages_are_still_read() -> None:
    # They wait in queues, the dead-letter queue and the archive across an upgrade.
    e = Envelope.from_json(SCHEMA_1)
    assert (e.id, e.alert.alertname, e.alert.fingerprint) == ("0f0e", "A", "00000000000000ff")
    assert e.group.common_labels == {"alertname": "A", "zone": "dmz"} and e.group.group_key == '{}:{alertname="A"}'
    # and written again (a replay, a retry) in the current schema, meaning the same
    assert json.loads(e.to_json())["schema"] == 2
    assert Envelope.from_json(e.to_json()) == e


def test_the_templates_see_the_group_as_sent() -> None:
    from dispatcher.templating import jinja_data as context

    payload = json.loads(reference_alert_bytes())
    payload["commonLabels"]["handwritten"] = "not the alert's"
    [e] = envelopes_from_webhook(payload)
    before = context(e)
    after = context(Envelope.from_json(e.to_json()))
    assert after["group"] == before["group"] and after["HookMessage"] == before["HookMessage"]
    assert after["HookMessage"]["CommonLabels"] == payload["commonLabels"]
    assert after["group"]["groupLabels"] == payload["groupLabels"]
    assert after["group"]["commonAnnotations"] == payload["commonAnnotations"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"schema": 99}',
        b'{"schema": true}',
        b'{"schema": 1, "id": "x"}',
        b'{"schema":1,"id":"x","receivedAt":"t","alert":{"labels":{"a":1}},"group":{}}',
        b'{"schema":1,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"commonLabels":[]}}',
        b'{"schema":1,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"extra":1}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"commonLabels":["missing"]}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"commonLabels":[["a"]]}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"commonLabels":{"a":"b"}}}',
        b'{"schema":2,"id":7,"receivedAt":"t","alert":{"labels":{}},"group":{}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"truncatedAlerts":"3"}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":[],"group":{}}',
        b"\xff\xfe",
    ],
)
def test_unreadable_messages_raise_invalid_envelope(body: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_json(body)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["alert", "group", "labels", "id", "schema", "commonLabels", "x"]), children, max_size=4),
    max_leaves=12,
)


@given(
    st.builds(
        lambda schema, rest: {"schema": schema, "id": "i", "receivedAt": "t", **rest},
        st.sampled_from([1, 2]),
        st.dictionaries(st.sampled_from(["alert", "group", "id"]), JSON, max_size=3),
    )
)
@settings(max_examples=300, deadline=None)
def test_any_message_either_decodes_or_raises_invalid_envelope(message: dict) -> None:
    try:
        Envelope.from_json(json.dumps(message).encode())
    except InvalidEnvelope:
        pass


def test_empty_fields_are_left_out_of_a_message_but_the_labels() -> None:
    bare = Envelope("i", "t", Alert("firing", {}), Group())
    assert bare.to_json() == b'{"schema":2,"id":"i","receivedAt":"t","alert":{"status":"firing","labels":{}},"group":{}}'
    assert Envelope.from_json(bare.to_json()).alert.fingerprint == fingerprint({})  # a fingerprint left out is the labels'


@pytest.mark.parametrize(
    ("ends_at", "status"),
    [
        ("0002-01-01T00:00:00Z", "resolved"),  # past; only year 1 means "not set"
        ("0001-01-01T00:00:00Z", "firing"),
        ("2001-01-01T00:00:00", "firing"),  # no time zone: not a time Alertmanager sends
        ("not a time", "firing"),
        ("2999-01-01T00:00:00+00:00", "firing"),
    ],
)
def test_a_missing_status_follows_ends_at_as_alertmanager_does(ends_at: str, status: str) -> None:
    [e] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "A"}, "endsAt": ends_at}]})
    assert e.alert.status == status


@pytest.mark.parametrize(("version", "read"), [("4", "4"), (4, "4"), (True, ""), (None, ""), (4.0, "")])
def test_the_webhook_version_is_read_as_text(version: object, read: str) -> None:
    assert envelopes_from_webhook({"version": version, "alerts": [{"labels": {}}]})[0].group.version == read


@pytest.mark.parametrize(
    "body",
    [
        b'{"schema":2,"receivedAt":"t","alert":{"labels":{}},"group":{}}',
        b'{"schema":2,"id":"x","alert":{"labels":{}},"group":{}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"truncatedAlerts":true}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"version":4}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":[]},"group":{}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{},"status":1},"group":{}}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":[]}',
        b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}}}',
    ],
)
def test_a_message_missing_a_required_field_or_with_a_wrong_type_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_json(body)


def test_a_webhooks_truncated_alerts_must_be_a_number() -> None:
    assert envelopes_from_webhook({"truncatedAlerts": None, "alerts": [{"labels": {}}]})[0].group.truncated_alerts == 0
    with pytest.raises(InvalidWebhook, match="truncatedAlerts"):
        envelopes_from_webhook({"truncatedAlerts": True, "alerts": []})


def test_schema_true_is_not_schema_1() -> None:
    with pytest.raises(InvalidEnvelope, match="schema True"):
        Envelope.from_json(SCHEMA_1.replace(b'"schema":1', b'"schema":true'))


def test_an_unreadable_group_entry_is_quoted_in_the_error_cut_to_80_characters() -> None:
    body = b'{"schema":2,"id":"x","receivedAt":"t","alert":{"labels":{}},"group":{"groupLabels":["' + b"n" * 200 + b'"]}}'
    with pytest.raises(InvalidEnvelope) as raised:
        Envelope.from_json(body)
    assert f"groupLabels: {'n' * 80!r} is neither" in str(raised.value)
