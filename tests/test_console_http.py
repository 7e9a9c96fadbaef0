"""The console's HTTP surface in process, against the real broker: who may do what, and what every answer carries."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import create_app, create_console
from console.security import CSP
from dispatcher.rendering import JobRules
from shared.settings import BrokerSettings, ConsoleSettings, KubeSettings, networks
from tests.conftest import DEFINITIONS, async_wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(b"ops:secret").decode()}


async def client_for(broker_settings: BrokerSettings, **settings: Any) -> TestClient:
    console = create_console(
        ConsoleSettings(**{"auth_mode": "basic", "auth_username": "ops", "auth_password": "secret", **settings}),
        broker_settings,
        KubeSettings(definitions_path=str(DEFINITIONS)),
        JobRules(),
        None,
        (),
    )
    client = TestClient(TestServer(create_app(console)))
    await client.start_server()
    await async_wait_for(lambda: console.link.ready.is_set(), what="the console connected")
    return client


@pytest.fixture
async def client(broker_settings: BrokerSettings) -> AsyncIterator[TestClient]:
    client = await client_for(broker_settings)
    yield client
    await client.close()


async def async_wait_for_text(client: TestClient, path: str, ok: Any) -> str:
    """The page once ``ok(text)`` holds (the console looks for the outcome stream shortly after connecting)."""
    import asyncio

    for _ in range(100):
        text = await (await client.get(path, headers=BASIC)).text()
        if ok(text):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never showed what was expected")


async def token(client: TestClient, headers: dict[str, str] = BASIC) -> str:
    html = await (await client.get("/definitions", headers=headers)).text()
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_every_page_needs_credentials_but_the_probes(client: TestClient) -> None:
    for path in ("/timeline", "/definitions", "/dead-letters", "/health", "/timeline/events", "/operations/x"):
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert response.headers["Content-Security-Policy"] == CSP
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ops:wrong").decode()}
    assert (await client.get("/timeline", headers=wrong)).status == 401
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readiness")).status == 200


async def test_every_page_carries_a_strict_content_security_policy(client: TestClient) -> None:
    for path in ("/timeline", "/definitions", "/dead-letters", "/health", "/static/console.js"):
        response = await client.get(path, headers=BASIC)
        assert response.status == 200, path
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP
    html = await (await client.get("/timeline", headers=BASIC)).text()
    assert "<script src=\"/static/console.js\" defer></script>" in html
    assert html.count("<script") == 1  # the console's one file; nothing inline


async def test_an_action_without_a_valid_csrf_token_is_refused(client: TestClient) -> None:
    form = {"action": "replay", "id": "m1"}
    response = await client.post("/dead-letters/replay", data=form, headers=BASIC)
    assert response.status == 403 and "CSRF" in await response.text()
    response = await client.post("/dead-letters/replay", data={**form, "csrf": "1." + "0" * 40}, headers=BASIC)
    assert response.status == 403
    # The token of another user is no token
    other = await client_for(_broker(client), auth_username="eve", auth_password="x")
    try:
        eve = {"Authorization": "Basic " + base64.b64encode(b"eve:x").decode()}
        response = await client.post("/dead-letters/replay", data={**form, "csrf": await token(other, eve)}, headers=BASIC)
        assert response.status == 403
    finally:
        await other.close()
    # With a token of this user but from another site
    good = await token(client)
    response = await client.post("/dead-letters/confirm", data={**form, "csrf": good}, headers={**BASIC, "Origin": "http://evil.example"})
    assert response.status == 403 and "cross-site" in await response.text()
    response = await client.post("/dead-letters/confirm", data={**form, "csrf": good}, headers={**BASIC, "Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    # The same request, as the page sends it, passes (nothing to confirm: no such dead letter)
    response = await client.post("/dead-letters/confirm", data={**form, "csrf": good}, headers=BASIC)
    assert response.status == 200 and "None of the dead letters named" in await response.text()


def _broker(client: TestClient) -> BrokerSettings:
    from console.app import CONSOLE

    return client.server.app[CONSOLE].broker  # type: ignore[attr-defined,union-attr]


async def test_read_only_mode_offers_no_action_and_refuses_every_one(broker_settings: BrokerSettings) -> None:
    client = await client_for(broker_settings, read_only=True)
    try:
        html = await (await client.get("/dead-letters", headers=BASIC)).text()
        assert "Replay selected" not in html and "Purge" not in html and "read-only" in html
        good = await token(client)
        for path in ("/dead-letters/confirm", "/dead-letters/replay", "/dead-letters/purge"):
            response = await client.post(path, data={"action": "replay" if "purge" not in path else "purge", "id": "m1", "csrf": good}, headers=BASIC)
            assert response.status == 403 and "read-only" in await response.text(), path
        # A preview changes nothing and stays open
        response = await client.post("/definitions/preview", data={"alert": "{}", "csrf": good}, headers=BASIC)
        assert response.status == 200
    finally:
        await client.close()


async def test_proxy_mode_believes_the_header_only_from_the_proxy(broker_settings: BrokerSettings) -> None:
    client = await client_for(broker_settings, auth_mode="proxy", proxy_addresses=networks("127.0.0.1/32"), proxy_user_header="X-Auth-User")
    try:
        assert (await client.get("/timeline")).status == 401  # the proxy named nobody
        response = await client.get("/timeline", headers={"X-Auth-User": "alice"})
        assert response.status == 200 and "alice" in await response.text()
    finally:
        await client.close()
    client = await client_for(broker_settings, auth_mode="proxy", proxy_addresses=networks("10.9.0.0/16"), proxy_user_header="X-Auth-User")
    try:
        response = await client.get("/timeline", headers={"X-Auth-User": "alice"})
        assert response.status == 403  # from a peer that is not the proxy, the header is worth nothing
    finally:
        await client.close()


async def test_bodies_over_the_limit_are_refused(broker_settings: BrokerSettings) -> None:
    client = await client_for(broker_settings, max_body_bytes=4096)
    try:
        good = await token(client)
        response = await client.post("/definitions/preview", data={"alert": "x" * 10000, "csrf": good}, headers=BASIC)
        assert response.status == 413
    finally:
        await client.close()


async def test_live_pages_are_bounded(broker_settings: BrokerSettings) -> None:
    client = await client_for(broker_settings, max_streams=1)
    try:
        first = await client.get("/timeline/events", headers=BASIC)
        assert first.status == 200 and first.headers["Content-Type"].startswith("text/event-stream")
        second = await client.get("/timeline/events", headers=BASIC)
        assert second.status == 503
        first.close()
    finally:
        await client.close()


async def test_outcome_records_are_read_from_the_outcome_stream_when_it_exists(broker_settings: BrokerSettings, connection) -> None:  # type: ignore[no-untyped-def]
    import aio_pika
    import orjson

    from shared.envelope import envelopes_from_webhook
    from shared.topology import Names

    names = Names(broker_settings.queue_prefix)
    outcomes = f"{names.prefix}.outcomes"
    channel = await connection.channel()
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "Expired", "pod": "p"}}]})
    try:
        # Given an outcome stream holding the end of a Job that no longer exists
        stream = await channel.declare_queue(outcomes, durable=True, arguments={"x-queue-type": "stream"})
        record = {"messageId": envelope.id, "job": "fix-expired-1", "outcome": "Failed", "reason": "DeadlineExceeded"}
        await channel.default_exchange.publish(aio_pika.Message(orjson.dumps(record)), routing_key=stream.name)
        client = await client_for(broker_settings)
        try:
            # When its alert is archived
            await channel.default_exchange.publish(aio_pika.Message(envelope.to_json(), message_id=envelope.id), routing_key=names.archive)

            # Then the timeline shows how it ended
            async def shown() -> bool:
                html = await (await client.get("/timeline?alertname=Expired", headers=BASIC)).text()
                return 'class="outcome o-failed">failed' in html and "DeadlineExceeded" in html

            await async_wait_for(shown, what="the outcome on the timeline")
            assert "not on this broker" not in await (await client.get("/health", headers=BASIC)).text()
        finally:
            await client.close()
    finally:
        await channel.queue_delete(outcomes)


async def test_the_timeline_follows_the_outcome_stream_every_openfero_process_declares(client: TestClient) -> None:
    # Every process of this version declares the topology, the outcome stream with it (the
    # console's reading of the Jobs alone is for a broker an older version set up: its units test it).
    await async_wait_for_text(client, "/timeline", lambda text: "No outcome stream on the broker" not in text)
    assert "outcome stream: not on this broker" not in await (await client.get("/health", headers=BASIC)).text()


async def test_a_live_page_quiet_for_a_while_still_hears_the_next_alert(broker_settings: BrokerSettings, connection, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import aio_pika

    from console import views
    from shared.envelope import envelopes_from_webhook
    from shared.topology import Names

    monkeypatch.setattr(views, "_HEARTBEAT_S", 0.2)
    client = await client_for(broker_settings)
    try:
        stream = await client.get("/timeline/events", headers=BASIC)
        lines: list[bytes] = []

        async def read_until(marker: bytes) -> None:
            while marker not in b"".join(lines):
                line = await stream.content.readline()
                assert line, "the live stream ended"
                lines.append(line)

        # Given a live page that heard nothing for several heartbeats
        await asyncio.wait_for(read_until(b": still here"), 5)
        await asyncio.sleep(0.5)
        # When an alert arrives
        [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "AfterQuiet"}}]})
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(envelope.to_json(), message_id=envelope.id), routing_key=Names(broker_settings.queue_prefix).archive)
        # Then its row is pushed to the page
        await asyncio.wait_for(read_until(b"AfterQuiet"), 10)
        assert b"event: rows" in b"".join(lines)
        stream.close()
    finally:
        await client.close()
