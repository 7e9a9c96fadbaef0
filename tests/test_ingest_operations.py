"""Operating ingest safely: authentication, limits, backpressure, metrics and its OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ingest.app import create_app
from ingest.openapi import OPENAPI
from shared.settings import IngestSettings, SettingsError
from shared.topology import Names
from tests.conftest import queue_depth, reference_alert_bytes
from tests.helpers import start_client


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth_with_the_password_from_a_file(broker_settings, channel, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")  # as a mounted Secret often ends
    client = await start_client(broker_settings, IngestSettings(auth_mode="basic", auth_username="am", auth_password_file=str(secret)))
    try:
        before = _value(await (await client.get("/metrics")).text(), 'openfero_webhooks_total{outcome="unauthorized"}')
        for headers in ({}, basic("am", "wrong"), basic("other", "s3cret"), {"Authorization": "Basic !!!"}, {"Authorization": "Bearer s3cret"}):
            response = await client.post("/alerts", data=reference_alert_bytes(), headers=headers)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert (await response.json())["error"] == "missing or wrong credentials"
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
        ok = await client.post("/alerts", data=reference_alert_bytes(), headers=basic("am", "s3cret"))
        assert ok.status == 200
        # probes and metrics stay open
        for path in ("/healthz", "/readiness", "/metrics", "/openapi.json", "/alerts"):
            assert (await client.get(path)).status == 200
        metrics = await (await client.get("/metrics")).text()
        assert _value(metrics, 'openfero_webhooks_total{outcome="unauthorized"}') == before + 5
        assert "openfero_auth_failures_total" in metrics
    finally:
        await client.close()


async def test_bearer_auth(broker_settings) -> None:
    client = await start_client(broker_settings, IngestSettings(auth_mode="bearer", auth_token="t0ken"))
    try:
        assert (await client.post("/alerts", data=reference_alert_bytes(), headers={"Authorization": "Bearer nope"})).status == 401
        denied = await client.post("/alerts", data=reference_alert_bytes())
        assert denied.headers["WWW-Authenticate"] == 'Bearer realm="openfero"'
        assert (await client.post("/alerts", data=reference_alert_bytes(), headers={"Authorization": "Bearer t0ken"})).status == 200
    finally:
        await client.close()


@pytest.mark.parametrize(
    "settings",
    [IngestSettings(auth_mode="basic"), IngestSettings(auth_mode="bearer"), IngestSettings(auth_mode="digest"), IngestSettings(auth_mode="bearer", auth_token_file="/nonexistent")],  # type: ignore[arg-type]
)
def test_incomplete_auth_settings_stop_the_start(settings: IngestSettings, broker_settings) -> None:
    with pytest.raises(SettingsError):
        create_app(broker_settings, settings)


async def test_credentials_never_reach_the_logs(broker_settings, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_client(broker_settings, IngestSettings(auth_mode="bearer", auth_token="t0ken-value"))
    try:
        await client.post("/alerts", data=reference_alert_bytes(), headers={"Authorization": "Bearer wr0ng-value"})
        assert (await client.post("/alerts", data=reference_alert_bytes(), headers={"Authorization": "Bearer t0ken-value"})).status == 200
    finally:
        await client.close()
    assert any(getattr(r, "event", "") == "alert.accepted" for r in caplog.records)  # the path was logged
    logged = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert "t0ken-value" not in logged and "wr0ng-value" not in logged


@pytest.mark.parametrize(
    ("settings", "payload", "status", "message"),
    [
        (IngestSettings(max_alerts=3), {"alerts": [{"labels": {"n": str(i)}} for i in range(4)]}, 413, "4 alerts is over the limit of 3"),
        (IngestSettings(max_labels=2), {"alerts": [{"labels": {"a": "1", "b": "2", "c": "3"}}]}, 422, "alerts[0].labels: 3 is over the limit of 2"),
        (IngestSettings(max_labels=2), {"alerts": [{"labels": {"a": "1"}, "annotations": {"a": "1", "b": "2", "c": "3"}}]}, 422, "alerts[0].annotations"),
        (IngestSettings(max_label_bytes=10), {"alerts": [{"labels": {"pod": "x" * 20}}]}, 422, "alerts[0].labels.pod: 23 bytes is over the limit of 10"),
    ],
)
async def test_limits_answer_clearly_and_store_nothing(broker_settings, channel, settings, payload, status, message) -> None:
    client = await start_client(broker_settings, settings)
    try:
        response = await client.post("/alerts", json=payload)
        assert response.status == status
        assert message in (await response.json())["error"]
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 0
    finally:
        await client.close()


async def test_a_saturated_ingest_answers_503_at_once(broker_settings, channel) -> None:
    # Given room for 10 alerts in flight, and a webhook of 8 being stored slowly
    client = await start_client(broker_settings, IngestSettings(max_inflight_alerts=10))
    from ingest.app import PUBLISHER

    real_publish = client.server.app[PUBLISHER].publish
    gate = asyncio.Event()

    async def slow_publish(envelopes):
        await gate.wait()
        await real_publish(envelopes)

    client.server.app[PUBLISHER].publish = slow_publish  # type: ignore[method-assign]
    try:
        first = asyncio.create_task(client.post("/alerts", json={"alerts": [{"labels": {"n": str(i)}} for i in range(8)]}))
        await asyncio.sleep(0.2)
        # When another webhook of 5 arrives, it is refused at once, not queued
        second = await asyncio.wait_for(client.post("/alerts", json={"alerts": [{"labels": {"m": str(i)}} for i in range(5)]}), 2)
        assert second.status == 503 and "busy" in (await second.json())["error"]
        # and the first one, once it can go on, is stored
        gate.set()
        assert (await first).status == 200
        assert await queue_depth(channel, Names(broker_settings.queue_prefix).work_queue) == 8
        metrics = await (await client.get("/metrics")).text()
        assert 'openfero_webhooks_total{outcome="busy"} 1.0' in metrics
    finally:
        await client.close()


async def test_metrics_count_what_ingest_did(broker_settings) -> None:
    client = await start_client(broker_settings)
    try:
        before = await (await client.get("/metrics")).text()
        assert "openfero_broker_connected 1.0" in before
        await client.post("/alerts", data=reference_alert_bytes())
        await client.post("/alerts", data=b"nope")
        after = await (await client.get("/metrics")).text()
        assert _value(after, 'openfero_webhooks_total{outcome="accepted"}') == _value(before, 'openfero_webhooks_total{outcome="accepted"}') + 1
        assert _value(after, 'openfero_webhooks_rejected_total{reason="not_json"}') == _value(before, 'openfero_webhooks_rejected_total{reason="not_json"}') + 1
        assert _value(after, "openfero_publish_duration_seconds_count") == _value(before, "openfero_publish_duration_seconds_count") + 1
        assert 'openfero_publish_duration_seconds_bucket{le="0.005"}' in after  # millisecond buckets
    finally:
        await client.close()


async def test_metrics_speak_openmetrics_and_gzip_and_say_which_build_runs(broker_settings) -> None:
    client = await start_client(broker_settings)
    try:
        plain = await client.get("/metrics")
        assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await plain.text()
        assert 'openfero_build_info{revision="unknown",version="' in text
        openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await openmetrics.text()).endswith("# EOF\n")
        zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await zipped.read()).decode().startswith("# HELP")
    finally:
        await client.close()


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_the_openapi_document_describes_exactly_the_routes(broker_settings) -> None:
    client = await start_client(broker_settings)
    try:
        served = await (await client.get("/openapi.json")).json()
        assert served == json.loads(json.dumps(OPENAPI))
        routes = {(r.method.lower(), r.resource.canonical) for r in client.server.app.router.routes() if r.method != "HEAD"}
        documented = {(method, path) for path, item in OPENAPI["paths"].items() for method in item}
        assert routes == documented
    finally:
        await client.close()


async def test_tls_listener(broker_settings, tmp_path: Path) -> None:
    from ingest.cli import _tls_context

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )
    settings = IngestSettings(tls_cert_file=str(cert), tls_key_file=str(key))
    context = _tls_context(settings)
    assert context is not None
    app = create_app(broker_settings, settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client_context = ssl.create_default_context(cafile=str(cert))
        client_context.check_hostname = False
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/healthz", ssl=client_context, timeout=aiohttp.ClientTimeout(total=10)) as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientError):  # plain HTTP gets no answer from a TLS listener
                await session.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5))
    finally:
        await runner.cleanup()
    with pytest.raises(SettingsError):
        _tls_context(IngestSettings(tls_cert_file=str(cert)))


async def test_queue_depth_and_consumers_are_exported(broker_settings, channel) -> None:
    from prometheus_client import REGISTRY

    from ingest.queues import watch_queues
    from tests.conftest import async_wait_for

    def sample(name: str, queue: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"queue": queue})

    from shared.broker import BrokerLink

    link = BrokerLink(broker_settings)
    runner = asyncio.create_task(link.run())
    await asyncio.wait_for(link.ready.wait(), 10)
    names = Names(broker_settings.queue_prefix)
    exchange = await channel.get_exchange(names.exchange)
    for _ in range(3):
        await exchange.publish(__import__("aio_pika").Message(b"x"), routing_key="alert")
    work = await channel.declare_queue(names.work_queue, passive=True)
    async def consume(message) -> None:
        await message.ack()

    tag = await work.consume(consume)
    await asyncio.sleep(0.2)
    watcher = asyncio.create_task(watch_queues(link, poll_s=0.1))
    try:
        await async_wait_for(lambda: sample("openfero_queue_consumers", "work") == 1, 5, "one consumer seen")
        assert sample("openfero_queue_messages", "dead") == 0
        await work.cancel(tag)
        await async_wait_for(lambda: sample("openfero_queue_consumers", "work") == 0, 10, "no consumer seen")
    finally:
        watcher.cancel()
        await link.close()
        runner.cancel()
