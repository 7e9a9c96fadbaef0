"""The webhook against the real broker: what it stores, what it refuses, how it answers outages."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from aiohttp.test_utils import TestClient

from shared.envelope import Envelope
from shared.settings import BrokerSettings, IngestSettings
from shared.topology import Names
from tests.conftest import async_wait_for, free_port, queue_depth, reference_alert_bytes
from tests.helpers import ingest_ready, start_client
from tests.tcp_proxy import TcpProxy, broker_proxy_url, start_broker_proxy


async def drain(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.declare_queue(queue_name, passive=True)
    messages = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        messages.append(message)
    return messages


async def test_reference_webhook_is_stored_as_one_persistent_message(broker_settings, channel) -> None:
    client = await start_client(broker_settings)
    try:
        response = await client.post("/alerts", data=reference_alert_bytes())
        assert response.status == 200
        assert await response.json() == {"accepted": 1}
        [message] = await drain(channel, Names(broker_settings.queue_prefix).work_queue)
        envelope = Envelope.from_json(message.body)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.message_id == envelope.id
        assert message.headers["alertname"] == "KubeQuotaAlmostFull"
        assert message.headers["fingerprint"] == envelope.alert.fingerprint
        assert envelope.alert.labels["zone"] == "internal"
        assert envelope.group.group_labels["zone"] == "dmz"
    finally:
        await client.close()


async def test_a_group_becomes_one_message_per_alert_each_with_its_status(broker_settings, channel) -> None:
    client = await start_client(broker_settings)
    alerts = [{"labels": {"alertname": "A", "n": str(i)}, "status": "resolved" if i % 3 == 0 else "firing"} for i in range(30)]
    try:
        response = await client.post("/alerts", json={"status": "firing", "alerts": alerts})
        assert (response.status, await response.json()) == (200, {"accepted": 30})
        envelopes = [Envelope.from_json(m.body) for m in await drain(channel, Names(broker_settings.queue_prefix).work_queue)]
        assert sorted((e.alert.labels["n"], e.alert.status) for e in envelopes) == sorted(
            (a["labels"]["n"], a["status"]) for a in alerts
        )
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "body is not JSON"),
        (b"\xff\xfe\x00", 400, "body is not JSON"),
        (b"[1, 2]", 422, "body: must be a JSON object"),
        (b'{"alerts": {"a": 1}}', 422, "alerts: must be a list"),
        (b'{"alerts": [{"labels": {"a": "b"}}, {"annotations": {}}]}', 422, "alerts[1].labels: required"),
        (b'{"alerts": [{"labels": {"a": "b"}}, {"labels": {"a": 5}}]}', 422, "alerts[1].labels.a: must be a string"),
        (b'{"alerts": [{"labels": {"a": "b"}}]}' + b" " * 2048, 413, "over the limit of 2048 bytes"),
    ],
)
async def test_bad_input_is_refused_with_json_and_nothing_is_published(broker_settings, channel, body, status, error) -> None:
    client = await start_client(broker_settings, IngestSettings(max_body_bytes=2048))
    try:
        response = await client.post("/alerts", data=body)
        assert response.status == status
        payload = await response.json()
        assert payload["status"] == status and error in payload["error"]
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
        assert (await client.get("/healthz")).status == 200
        ok = await client.post("/alerts", json={"alerts": [{"labels": {"alertname": "after"}}]})
        assert ok.status == 200  # the service keeps working
    finally:
        await client.close()


async def test_a_body_over_the_limit_without_content_length_gets_413(broker_settings, channel) -> None:
    client = await start_client(broker_settings, IngestSettings(max_body_bytes=1024))

    async def chunks():
        for _ in range(10):
            yield b" " * 512

    try:
        response = await client.post("/alerts", data=chunks())
        assert response.status == 413
        assert "over the limit" in (await response.json())["error"]
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
    finally:
        await client.close()


async def test_zero_alerts_answer_200_and_publish_nothing(broker_settings, channel) -> None:
    client = await start_client(broker_settings)
    try:
        response = await client.post("/alerts", json={"version": "4", "alerts": []})
        assert (response.status, await response.json()) == (200, {"accepted": 0})
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
    finally:
        await client.close()


async def test_probes_and_the_get_alerts_endpoint(broker_settings) -> None:
    client = await start_client(broker_settings)
    try:
        assert (await client.get("/alerts")).status == 200
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readiness")).status == 200
        missing = await client.get("/nope")
        assert missing.status == 404 and (await missing.json())["status"] == 404
    finally:
        await client.close()


async def test_a_large_group_is_accepted_under_the_default_limit(broker_settings, channel) -> None:
    client = await start_client(broker_settings, IngestSettings(publish_timeout_s=30))
    labels = {f"label_{j}": "v" * 20 for j in range(10)}
    alerts = [{"labels": {**labels, "alertname": "Storm", "n": str(i)}, "annotations": {"summary": "s" * 100}} for i in range(5000)]
    body = json.dumps({"alerts": alerts}).encode()
    assert len(body) > 2 * 1024 * 1024  # twice aiohttp's own default limit
    try:
        response = await client.post("/alerts", data=body)
        assert (response.status, await response.json()) == (200, {"accepted": 5000})
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 5000
    finally:
        await client.close()


async def test_broker_away_means_503_and_not_ready_then_200_once_back(amqp_url, prefix, channel) -> None:
    # Given ingest reaching the broker through a proxy we can cut
    proxy, url = await start_broker_proxy(amqp_url)
    client = await start_client(BrokerSettings(amqp_url=url, queue_prefix=prefix, reconnect_max_s=0.2))
    work = Names(prefix).work_queue
    try:
        # When the broker goes away
        await proxy.cut()
        await async_wait_for(lambda: _notingest_ready(client), what="readiness to drop")
        # Then webhooks get 503 with a reason, and nothing is stored
        response = await client.post("/alerts", data=reference_alert_bytes())
        assert response.status == 503
        assert "retry" in (await response.json())["error"]
        assert await queue_depth(channel, work) == 0
        assert (await client.get("/healthz")).status == 200
        # When it comes back, the same webhook is stored
        await proxy.restore()
        await async_wait_for(lambda: ingest_ready(client), what="readiness to return")
        response = await client.post("/alerts", data=reference_alert_bytes())
        assert response.status == 200
        assert await queue_depth(channel, work) == 1
    finally:
        await client.close()
        await proxy.cut()


async def _notingest_ready(client: TestClient) -> bool:
    return (await client.get("/readiness")).status == 503


async def test_ingest_starts_without_a_broker_and_connects_when_it_comes(amqp_url, prefix, channel) -> None:
    listen = free_port()
    host, port, url = broker_proxy_url(amqp_url, listen)
    proxy = TcpProxy(host, port, listen)
    client = await start_client(BrokerSettings(amqp_url=url, queue_prefix=prefix, reconnect_max_s=0.2), ready=False)
    try:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readiness")).status == 503
        assert (await client.post("/alerts", data=reference_alert_bytes())).status == 503
        await proxy.start()
        await async_wait_for(lambda: ingest_ready(client), what="ingest to connect")
        assert (await client.post("/alerts", data=reference_alert_bytes())).status == 200
    finally:
        await client.close()
        await proxy.cut()


async def test_unroutable_alerts_get_503(broker_settings, channel) -> None:
    # Given the bindings removed behind ingest's back
    client = await start_client(broker_settings)
    names = Names(broker_settings.queue_prefix)
    try:
        for queue in (names.work_queue, names.archive):
            declared = await channel.declare_queue(queue, passive=True)
            await declared.unbind(names.exchange, routing_key="alert")
        # Then the broker returns the message and ingest does not claim it stored
        response = await client.post("/alerts", data=reference_alert_bytes())
        assert response.status == 503
        assert "returned" in (await response.json())["error"]
    finally:
        await client.close()


async def test_a_broker_that_does_not_confirm_in_time_means_503(amqp_url, prefix, channel) -> None:
    # Given ingest connected through a proxy that will stop passing bytes
    proxy, url = await start_broker_proxy(amqp_url)
    client = await start_client(
        BrokerSettings(amqp_url=url, queue_prefix=prefix, reconnect_max_s=0.2), IngestSettings(publish_timeout_s=0.5)
    )
    try:
        # When the broker hangs, the webhook is answered 503 within the publish timeout
        proxy.stall()
        started = asyncio.get_running_loop().time()
        response = await client.post("/alerts", data=reference_alert_bytes())
        assert response.status == 503
        assert "did not confirm within 0.5 s" in (await response.json())["error"]
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        proxy.resume()
        await client.close()
        await proxy.cut()
