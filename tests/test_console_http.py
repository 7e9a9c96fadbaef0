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


async def _dead_letters_in_queue(connection: Any, prefix: str, alerts: dict[str, str]) -> dict[str, str]:
    """Dead letters as the dispatcher leaves them, one per alertname → reason; their ids by alertname."""
    import aio_pika

    from shared.envelope import envelopes_from_webhook
    from shared.topology import DEAD_ROUTING_KEY, Names, declare

    channel = await connection.channel()
    declared = await declare(connection, channel, Names(prefix), group_size=1)
    ids = {}
    for name, reason in alerts.items():
        [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": name}}]})
        headers = {"openfero-attempts": 1, "openfero-error": reason}
        message = aio_pika.Message(envelope.to_json(), message_id=envelope.id, headers=headers)
        await declared.exchange.publish(message, routing_key=DEAD_ROUTING_KEY)
        ids[name] = envelope.id
    return ids


async def _operation_done(client: TestClient, location: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        summary: dict[str, Any] = await (await client.get(location + ".json", headers=BASIC)).json()
        return summary if summary["state"] in ("done", "failed") else None

    result: dict[str, Any] = await async_wait_for(finished, what="the operation to end")
    return result


async def test_all_dead_letters_matching_a_filter_are_confirmed_then_purged(broker_settings: BrokerSettings, connection, prefix: str) -> None:  # type: ignore[no-untyped-def]
    # Given five dead letters, three of them refused by the API
    ids = await _dead_letters_in_queue(
        connection,
        prefix,
        {"DiskFull": "ApiRejected: 422", "PodCrash": "ApiRejected: 422", "NodeDown": "ApiRejected: 403", "Broken": "yaml: line 3", "Other": "yaml: line 9"},
    )
    client = await client_for(broker_settings)
    try:
        # When an operator asks for every dead letter whose reason says ApiRejected
        form = {"action": "purge", "reason": "apirejected", "csrf": await token(client)}
        response = await client.post("/dead-letters/confirm?scope=matching", data=form, headers=BASIC)
        html = await response.text()
        # Then the confirmation names exactly those three, and nothing is gone yet
        assert response.status == 200 and "Purge deletes these 3 dead letters" in html
        chosen = [part.split('"', 1)[0] for part in html.split('name="id" value="')[1:]]
        assert sorted(chosen) == sorted(ids[n] for n in ("DiskFull", "PodCrash", "NodeDown"))
        assert await queue_depth_of(connection, prefix) == 5
        # And once confirmed, the purge runs to its end and leaves the other two
        confirmed = [("csrf", await token(client)), ("action", "purge"), *(("id", i) for i in chosen)]
        response = await client.post("/dead-letters/purge", data=confirmed, headers=BASIC, allow_redirects=False)
        assert response.status == 303
        summary = await _operation_done(client, response.headers["Location"])
        assert summary["state"] == "done" and summary["done"] == 3, summary
        assert await queue_depth_of(connection, prefix) == 2
        html = await (await client.get("/dead-letters?fresh=1", headers=BASIC)).text()
        assert "Broken" in html and "Other" in html and "DiskFull" not in html
    finally:
        await client.close()


async def queue_depth_of(connection: Any, prefix: str) -> int:
    from shared.topology import Names

    channel = await connection.channel()
    queue = await channel.declare_queue(Names(prefix).dead_queue, passive=True)
    count: int = queue.declaration_result.message_count
    await channel.close()
    return count


async def test_the_console_serves_https_when_given_a_certificate(broker_settings: BrokerSettings, tmp_path: Any) -> None:
    import asyncio
    import os
    import ssl
    import subprocess
    import sys

    import aiohttp

    from tests.conftest import ROOT, free_port

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )
    port = free_port()
    env = {
        **os.environ,
        "OPENFERO_AMQP_URL": broker_settings.amqp_url,
        "OPENFERO_QUEUE_PREFIX": broker_settings.queue_prefix,
        "OPENFERO_CONSOLE_ADDR": f"127.0.0.1:{port}",
        "OPENFERO_CONSOLE_AUTH": "basic",
        "OPENFERO_CONSOLE_AUTH_USERNAME": "ops",
        "OPENFERO_CONSOLE_AUTH_PASSWORD": "secret",
        "OPENFERO_CONSOLE_TLS_CERT_FILE": str(cert),
        "OPENFERO_CONSOLE_TLS_KEY_FILE": str(key),
        "OPENFERO_DEFINITIONS_PATH": str(DEFINITIONS),
        "KUBECONFIG": "/nonexistent",
    }
    console = subprocess.Popen([sys.executable, "-m", "console"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        trusting.check_hostname = False
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

            async def answers() -> int | None:
                try:
                    async with session.get(f"https://127.0.0.1:{port}/timeline", ssl=trusting, headers=BASIC) as response:
                        return response.status
                except aiohttp.ClientConnectorError:
                    return None

            assert await async_wait_for(answers, what="the console over HTTPS") == 200
            with pytest.raises(aiohttp.ClientError):  # plain HTTP gets no page from a TLS listener
                async with session.get(f"http://127.0.0.1:{port}/timeline", headers=BASIC) as response:
                    await response.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # nor does a client that does not trust the certificate
                await session.get(f"https://127.0.0.1:{port}/timeline", headers=BASIC)
    finally:
        console.terminate()
        await asyncio.get_running_loop().run_in_executor(None, console.wait, 30)
    # Half a configuration is a usage error naming both settings
    half = {**env, "OPENFERO_CONSOLE_TLS_KEY_FILE": ""}
    result = subprocess.run([sys.executable, "-m", "console"], cwd=ROOT, env=half, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "OPENFERO_CONSOLE_TLS_CERT_FILE and OPENFERO_CONSOLE_TLS_KEY_FILE" in result.stderr
