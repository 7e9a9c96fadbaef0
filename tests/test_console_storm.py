"""The console's storm controls: each definition's breaker on the definitions page, the parked alerts
on the dead-letter page, read from where the dispatchers keep them (the API double's Lease, the real
broker's parked queue)."""

from __future__ import annotations

import base64
from pathlib import Path

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import create_app, create_console
from dispatcher.breaking import BreakerStore
from dispatcher.jobs import load_api_client
from dispatcher.rendering import JobRules
from dispatcher.storm import Breaker, BreakerState
from shared import headers as h
from shared.settings import BrokerSettings, ConsoleSettings, KubeSettings
from shared.topology import PARKED_ROUTING_KEY, Names
from tests.conftest import async_wait_for, reference_configmap, write_kubeconfig
from tests.kube_double import KubeDouble
from tests.storm_rig import alerts

BASIC = {"Authorization": "Basic " + base64.b64encode(b"ops:secret").decode()}
QUOTA = "default/openfero-kubequotaalmostfull-firing/KubeQuotaAlmostFull"


async def test_the_console_shows_each_breaker_and_the_parked_alerts(kube_double: KubeDouble, broker_settings: BrokerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the reference definition, its breaker open, and one alert parked behind it
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube_double, tmp_path)))
    api, _ = load_api_client(timeout_s=5)
    kube_double.apply("configmaps", "default", reference_configmap())
    store = BreakerStore(api, "default", f"{broker_settings.queue_prefix}-breakers")
    store.update(QUOTA, lambda state: BreakerState(Breaker.OPEN, 3, 1_700_000_000.0, 600.0))
    console = create_console(
        ConsoleSettings(auth_mode="basic", auth_username="ops", auth_password="secret"),
        broker_settings,
        KubeSettings(definitions_namespace="default", job_namespace="default", own_namespace="default"),
        JobRules(),
        None,
        (),
        api,
    )
    client = TestClient(TestServer(create_app(console)))
    await client.start_server()
    try:
        await async_wait_for(lambda: console.link.ready.is_set(), what="the console connected")
        [envelope] = alerts(1)
        connection = await aio_pika.connect(broker_settings.amqp_url)
        exchange = await (await connection.channel()).get_exchange(Names(broker_settings.queue_prefix).exchange)
        headers = {h.DEFINITION: QUOTA, h.PARKED_AT: "2026-01-01T00:00:00.000+00:00"}
        await exchange.publish(aio_pika.Message(envelope.to_json(), message_id="parked-1", headers=headers), routing_key=PARKED_ROUTING_KEY)
        await connection.close()

        # Then the definitions page shows the breaker open, with why and since when
        async def page(path: str, wanted: str) -> str | None:
            text = await (await client.get(path, headers=BASIC)).text()
            return text if wanted in text else None

        definitions = await async_wait_for(lambda: page("/definitions", "3 failed Jobs in a row"), 20, "the breaker shown")
        assert ">open</span>" in definitions and "2023-11-14 22:13:20Z" in definitions
        # and the dead-letter page lists the parked alert, not as a dead letter
        parked = await async_wait_for(lambda: page("/dead-letters", "parked-1"), 20, "the parked alert")
        section = parked.split("<h2>Parked alerts</h2>", 1)[1]
        assert "parked-1" in section and "KubePodCrashLooping" in section and QUOTA in section
        # When the breaker closes, the page says so
        store.update(QUOTA, lambda state: BreakerState())
        await async_wait_for(lambda: page("/definitions", ">closed"), 20, "closed")
    finally:
        await client.close()


def test_the_timeline_shows_an_alert_held_back_by_storm_control_until_a_job_of_its_own_shows_up() -> None:
    from datetime import datetime, timedelta, timezone

    import orjson

    from console.outcomes import read_outcome
    from console.timeline import AlertEntry, Timeline
    from dispatcher.deciding import decide
    from dispatcher.results import Kind, Result
    from dispatcher.retrying import RetryPolicy
    from shared.envelope import envelopes_from_webhook

    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "KubePodCrashLooping", "pod": "web-1"}}]})
    now = datetime.now(timezone.utc)
    timeline = Timeline(timedelta(hours=1), 100)
    timeline.add_alert(AlertEntry("m1", now, "KubePodCrashLooping", "firing", dict(envelope.alert.labels), envelope.alert.fingerprint, "", QUOTA))
    # Given the record a dispatcher publishes for a suppressed alert
    decision = decide(Result(Kind.SUPPRESSED, covering_job="restart-abc", alert=envelope.alert, definition=QUOTA), 1, RetryPolicy((1.0,), 2, 0), {}, now.isoformat(), "w", "m1")
    record = read_outcome(orjson.dumps(decision.record))
    assert record is not None
    timeline.apply_outcome(record)
    # Then the alert's row says so, naming the Job that covered it, and no Job's row is touched
    [row] = list(timeline.rows())
    assert row.outcome == "suppressed" and "restart-abc" in row.detail
    assert timeline.outcomes == {}
