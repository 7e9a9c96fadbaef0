"""Hostile webhooks against the real broker: each gets a clear answer, costs bounded work, and cannot grow on the broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import aio_pika
import pytest
from pamqp import commands
from pamqp.frame import marshal
from pamqp.header import ContentHeader

import shared.envelope
from ingest.app import create_app
from ingest.limits import GROWTH_BOUND
from shared.settings import IngestSettings, SettingsError, load
from shared.topology import Names
from tests.conftest import ROOT, queue_depth, reference_alert_bytes
from tests.helpers import start_client


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON; charset=UTF-8", 200),
        ("text/plain", 415),  # what a browser may post cross-site without asking first
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/octet-stream", 415),
        ("application/json; charset=latin-1", 415),
        (None, 415),
    ],
)
async def test_only_application_json_is_taken(broker_settings, channel, content_type, status) -> None:
    client = await start_client(broker_settings)
    try:
        if content_type is None:
            client.session.headers.pop("Content-Type", None)
            response = await client.post("/alerts", data=reference_alert_bytes(), skip_auto_headers=["Content-Type"])
        else:
            response = await client.post("/alerts", data=reference_alert_bytes(), headers={"Content-Type": content_type})
        assert response.status == status
        if status == 415:
            assert "must be application/json" in (await response.json())["error"]
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == (1 if status == 200 else 0)
    finally:
        await client.close()


async def _raw_post(port: int, authorization: bytes) -> int:
    """POST with an Authorization header of raw bytes, as no HTTP client library would send them."""
    body = reference_alert_bytes()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + authorization
        + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe\xfd", b"Bearer t0ken\xc3", b"Basic \xff\xfe", b"Basic " + b"\xe2\x82\xac" * 10, b"Bearer", b"\xff", b"Basic YTpi:::", b"Bearer  t0ken  x"],
)
@pytest.mark.parametrize("mode", ["bearer", "basic"])
async def test_malformed_or_non_utf8_credentials_get_401_never_500(broker_settings, channel, authorization, mode) -> None:
    settings = IngestSettings(auth_mode=mode, auth_token="t0ken", auth_username="a", auth_password="b")
    client = await start_client(broker_settings, settings)
    try:
        assert await _raw_post(client.port, authorization) == 401
        assert (await client.get("/healthz")).status == 200
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OPENFERO_AUTH_TOKEN": "t"}, "OPENFERO_AUTH_TOKEN"),
        ({"OPENFERO_AUTH_USERNAME": "u", "OPENFERO_AUTH_PASSWORD_FILE": "/p"}, "OPENFERO_AUTH_USERNAME, OPENFERO_AUTH_PASSWORD_FILE"),
        ({"OPENFERO_AUTH_PASSWORD": "p", "OPENFERO_AUTH": " None "}, "OPENFERO_AUTH_PASSWORD"),
    ],
)
def test_credentials_without_an_auth_mode_stop_the_start(broker_settings, variables, named) -> None:
    with pytest.raises(SettingsError, match=f"{named} set, but OPENFERO_AUTH is none"):
        create_app(broker_settings, load(IngestSettings, variables))


def test_credentials_without_an_auth_mode_are_a_usage_error_of_the_command(broker_settings) -> None:
    env = {"OPENFERO_AMQP_URL": broker_settings.amqp_url, "OPENFERO_AUTH_TOKEN_FILE": "/run/secrets/token", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "OPENFERO_AUTH_TOKEN_FILE set, but OPENFERO_AUTH is none" in result.stderr
    assert "Traceback" not in result.stderr


def _webhook(alerts: int, **group: object) -> dict:
    return {**group, "alerts": [{"labels": {"alertname": "A", "n": str(i)}} for i in range(alerts)]}


@pytest.mark.parametrize(
    ("settings", "payload", "status", "message"),
    [
        (IngestSettings(max_alerts=100), _webhook(101), 413, "101 alerts is over the limit of 100"),
        (IngestSettings(max_label_bytes=100), {"alerts": _webhook(50)["alerts"] + [{"labels": {"pod": "x" * 200}}]}, 422, "alerts[50].labels.pod"),
        (IngestSettings(max_label_bytes=100), {"alerts": _webhook(50)["alerts"] + [{"labels": {}, "startsAt": "x" * 200}]}, 422, "alerts[50].startsat: 200 bytes"),
        (IngestSettings(), _webhook(5, groupKey="k" * 9000), 422, "alerts[0]: 9000 bytes of group context is over the limit of 8192"),
        (IngestSettings(), _webhook(5, commonLabels={"hand": "written" * 1200}), 422, "bytes of group context is over the limit of 8192"),
        (IngestSettings(), _webhook(500, groupKey="k" * 100), 422, "the group context copied into each of 500 alerts"),
        (IngestSettings(max_message_bytes=1000), {"alerts": [{"labels": {f"l{i}": "v" * 90 for i in range(11)}}]}, 422, "alerts[0]: 1"),
        (IngestSettings(max_labels=3), _webhook(1, commonLabels={"a": "1", "b": "2", "c": "3", "d": "4"}), 422, "commonLabels: 4 is over the limit of 3"),
    ],
)
async def test_limits_refuse_before_any_per_alert_work(broker_settings, channel, monkeypatch, settings, payload, status, message) -> None:
    # Given a count of the per-alert work a webhook would cost
    work = {"fingerprints": 0, "ids": 0}

    def counting_fingerprint(labels: dict[str, str]) -> str:
        work["fingerprints"] += 1
        return "0" * 16

    def counting_uuid4() -> uuid.UUID:
        work["ids"] += 1
        return uuid.UUID(int=work["ids"])

    monkeypatch.setattr(shared.envelope, "fingerprint", counting_fingerprint)
    monkeypatch.setattr(shared.envelope.uuid, "uuid4", counting_uuid4)
    client = await start_client(broker_settings, settings)
    try:
        # When a webhook over a limit arrives
        response = await client.post("/alerts", json=payload)
        # Then it is refused, naming the limit, before any of that work was done
        assert response.status == status
        assert message in (await response.json())["error"]
        assert work == {"fingerprints": 0, "ids": 0}
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
    finally:
        await client.close()


async def test_a_large_group_context_that_the_alerts_share_is_taken(broker_settings, channel) -> None:
    # Alertmanager's common annotations are every alert's own: named, not copied.
    big = "x" * 10_000
    payload = {"commonAnnotations": {"runbook": big}, "commonLabels": {"alertname": "A"}, "alerts": [{"labels": {"alertname": "A", "n": str(i)}, "annotations": {"runbook": big}} for i in range(40)]}
    client = await start_client(broker_settings)
    try:
        response = await client.post("/alerts", json=payload)
        assert (response.status, await response.json()) == (200, {"accepted": 40})
    finally:
        await client.close()


# -- how much a webhook may become on the broker ----------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # A group annotation no alert shares, over the per-message bound: each message would copy it.
        ({"commonAnnotations": {"runbook": "x" * 15_000}, "alerts": [{"labels": {"n": str(i)}} for i in range(1000)]}, "bytes of group context is over the limit of 8192"),
        # Under that bound, but copied into 1,000 messages it would be 190 times the body.
        ({"commonAnnotations": {"runbook": "x" * 7_000}, "alerts": [{"labels": {"n": str(i)}} for i in range(1000)]}, "the group context copied into each of 1000 alerts"),
    ],
)
async def test_group_context_that_would_be_copied_into_every_message_is_refused(broker_settings, channel, payload, message) -> None:
    client = await start_client(broker_settings)
    try:
        response = await client.post("/alerts", json=payload)
        assert response.status == 422
        assert message in (await response.json())["error"]
        names = Names(broker_settings.queue_prefix)
        assert await queue_depth(channel, names.work_queue) == 0
    finally:
        await client.close()


def stored_bytes(message: aio_pika.abc.AbstractIncomingMessage) -> int:
    """The message as published: its body and its content header (properties and headers)."""
    # A stream adds its offset to each delivery; it is not part of what was published.
    headers = {k: v for k, v in (message.headers or {}).items() if k != "x-stream-offset"}
    properties = commands.Basic.Properties(
        content_type=message.content_type,
        delivery_mode=message.delivery_mode.value if message.delivery_mode else None,
        headers=headers,
        message_id=message.message_id,
        message_type=message.type,
        timestamp=message.timestamp,
    )
    return len(message.body) + len(marshal(ContentHeader(0, len(message.body), properties), 1))


async def _bytes_in(connection: aio_pika.abc.AbstractConnection, queue_name: str, count: int, stream: bool = False) -> int:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)  # a stream consumer must set one
    queue = await channel.declare_queue(queue_name, passive=True)
    total, seen = 0, 0
    done = asyncio.get_running_loop().create_future()

    async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal total, seen
        total += stored_bytes(message)
        seen += 1
        await message.ack()
        if seen == count and not done.done():
            done.set_result(None)

    tag = await queue.consume(take, arguments={"x-stream-offset": "first"} if stream else None)
    await asyncio.wait_for(done, 60)
    await queue.cancel(tag)
    await channel.close()
    return total


HOSTILE = {
    # The most alerts, each as small as an alert can be: every message's fixed
    # part (id, times, keys, headers) against 14 bytes of body.
    "tiny alerts": {"alerts": [{"labels": {}}] * 10_000},
    # The same, with every group field that the messages may carry together.
    "tiny alerts and every group field": {
        **{field: "x" for field in ("version", "status", "receiver", "groupKey", "externalURL")},
        "truncatedAlerts": 1,
        "alerts": [{"labels": {}}] * 10_000,
    },
    # Alerts of one label, which each group map names.
    "small alerts and group maps naming them": {
        **{field: "x" for field in ("version", "status", "receiver", "groupKey", "externalURL")},
        **{field: {"a": ""} for field in ("groupLabels", "commonLabels")},
        "commonAnnotations": {"b": ""},
        "alerts": [{"labels": {"a": ""}, "annotations": {"b": ""}}] * 10_000,
    },
    # One alert with the most group context a message may carry, hand-written.
    "one alert and 8 KiB of group context": {
        "groupKey": "k" * 2000,
        "receiver": "r" * 1000,
        "externalURL": "u" * 1000,
        "status": "s" * 500,  # carried three times: the group's, the alert's, a header
        "commonLabels": {f"l{i}": "v" * 400 for i in range(6)},
        "alerts": [{"labels": {"big": "b" * 1000}}],
    },
    # What is copied into headers (alertname, status, fingerprint), made large.
    "large header fields": {"alerts": [{"labels": {"alertname": "a" * 16000}, "status": "s" * 16000, "fingerprint": "f" * 16000}] * 3},
    # Group maps naming every label of alerts with long label names.
    "group maps naming every label": {
        "groupLabels": {f"{'n' * 150}{i}": "" for i in range(100)},
        "commonLabels": {f"{'n' * 150}{i}": "" for i in range(100)},
        "alerts": [{"labels": {f"{'n' * 150}{i}": "" for i in range(100)}}] * 20,
    },
    # The webhook, now taken: 40 alerts sharing a 10 kB annotation.
    "a large shared annotation": {
        "commonAnnotations": {"runbook": "x" * 10_000},
        "alerts": [{"labels": {"n": str(i)}, "annotations": {"runbook": "x" * 10_000}} for i in range(40)],
    },
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_webhook_puts_at_most_a_bounded_multiple_of_its_size_on_each_queue(broker_settings, connection, name) -> None:
    body = json.dumps(HOSTILE[name], separators=(",", ":")).encode()
    alerts = len(HOSTILE[name]["alerts"])
    client = await start_client(broker_settings, IngestSettings(publish_timeout_s=30))
    names = Names(broker_settings.queue_prefix)
    try:
        response = await client.post("/alerts", data=body)
        assert (response.status, await response.json()) == (200, {"accepted": alerts})
        for queue, stream in ((names.work_queue, False), (names.archive, True)):
            stored = await _bytes_in(connection, queue, alerts, stream)
            assert stored <= GROWTH_BOUND * len(body), f"{queue}: {stored} bytes from a body of {len(body)} ({stored / len(body):.1f}x)"
    finally:
        await client.close()
