"""The outcome leader ends a Job's silence, against the real Alertmanager: expired at once unless a success keeps it.

The leader (election, tracker, broker link) runs in process with the API
double, whose Job controller the test plays; Alertmanager is the real one.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kubernetes import client

from dispatcher.alertmanager import Alertmanagers
from dispatcher.jobs import OperariusStatusWriter
from dispatcher.leading import LeaderElector
from dispatcher.metrics import SILENCES_EXPIRED_EARLY
from dispatcher.reporting import EventWriter, RecordPublisher
from dispatcher.silencing import SilenceEnder
from dispatcher.tracking import OutcomeTracker
from openfero.history import read_stream
from shared.broker import BrokerLink
from shared.settings import AlertmanagerSettings, BrokerSettings
from shared.topology import Names
from tests.alertmanager import Alertmanager, routes
from tests.conftest import async_wait_for, free_port
from tests.kube_double import KubeDouble
from tests.helpers import SHORT_LEASE_TIMES, SilencingHandler, counter, quota_alert, silenced_configmap

FINALIZER = "openfero.io/outcome"


class Leader:
    def __init__(self, api: client.ApiClient, catalog: Any, broker: BrokerSettings, urls: str):
        self.link = BrokerLink(broker)
        self.alertmanagers = Alertmanagers(AlertmanagerSettings(urls=urls, timeout_s=1))
        self.status = OperariusStatusWriter(api, 2)
        self.elector = LeaderElector(api, "default", "oftest-outcomes", "leader", SHORT_LEASE_TIMES, 2)
        self.tracker = OutcomeTracker(api, "default", catalog, RecordPublisher(self.link), "leader", self.status, EventWriter(api, "leader", 2), timeout_s=2, silences=SilenceEnder(self.alertmanagers))
        self.stop = asyncio.Event()
        self.tasks = [asyncio.create_task(self.link.run()), asyncio.create_task(self.elector.run(self.stop)), asyncio.create_task(self.tracker.run(self.elector, self.stop))]

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks[1:]), 15)
        await self.link.close()
        self.tasks[0].cancel()
        await asyncio.gather(self.tasks[0], return_exceptions=True)
        self.status.close()
        await self.alertmanagers.close()


def finished_with(kube: KubeDouble, name: str) -> bool:
    job = kube.get("jobs", "default", name)
    return job is None or FINALIZER not in (job["metadata"].get("finalizers") or [])


async def records(amqp: Any, prefix: str) -> dict[str, dict[str, Any]]:
    found = await read_stream(amqp, Names(prefix).outcomes, datetime.now(timezone.utc) - timedelta(hours=1))
    return {json.loads(body)["job"]: json.loads(body) for body, _, _ in found}


async def make(kube: KubeDouble, api: client.ApiClient, urls: str, namespace: str, after_success: str = "keep", deadline_s: int = 600, margin_s: float = 60) -> tuple[str, str]:
    """A silenced Job for a quota alert of ``namespace``: (Job name, silence id)."""
    dispatcher = SilencingHandler(kube, api, urls, silenced_configmap(after_success, deadline_s), margin_s=margin_s)
    try:
        outcome = await dispatcher.handle(quota_alert(namespace=namespace))
    finally:
        await dispatcher.close()
    job = kube.get("jobs", "default", outcome.job)
    return outcome.job, job["metadata"]["annotations"]["openfero.io/silence-id"]  # type: ignore[index]


def state(am: Alertmanager, silence_id: str) -> str:
    return am.silence(silence_id)["status"]["state"]  # type: ignore[index]


async def test_failed_deleted_and_succeeded_jobs_do_to_their_silence_what_the_definition_says(kube_double: KubeDouble, api, am: Alertmanager, broker_settings: BrokerSettings, connection) -> None:
    failed, failed_s = await make(kube_double, api, am.url, "a")
    deleted, deleted_s = await make(kube_double, api, am.url, "b")
    kept, kept_s = await make(kube_double, api, am.url, "c")
    quick, quick_s = await make(kube_double, api, am.url, "d", after_success="expire")
    assert {state(am, s) for s in (failed_s, deleted_s, kept_s, quick_s)} == {"active"}
    before = {why: counter(SILENCES_EXPIRED_EARLY.labels(why)) for why in ("failed", "deleted", "succeeded")}
    catalog = SilencingHandler(kube_double, api, am.url, silenced_configmap()).handler.catalog
    leader = Leader(api, catalog, broker_settings, am.url)
    try:
        # When the Jobs end: one runs out of time, one is deleted, two succeed
        kube_double.job_failed(failed, reason="DeadlineExceeded")
        kube_double.delete("jobs", "default", deleted)
        kube_double.job_succeeded(kept)
        kube_double.job_succeeded(quick)
        await async_wait_for(lambda: all(finished_with(kube_double, n) for n in (failed, deleted, kept, quick)), timeout_s=15, what="all four recorded")
        # Then the failed and the deleted one's silences are expired, the kept one holds, the other expired too
        assert [state(am, s) for s in (failed_s, deleted_s, kept_s, quick_s)] == ["expired", "expired", "active", "expired"]
        found = await records(connection, broker_settings.queue_prefix)
        assert {n: found[n]["silence"]["action"] for n in (failed, deleted, kept, quick)} == {failed: "expired", deleted: "expired", kept: "kept", quick: "expired"}
        assert found[failed]["silence"]["id"] == failed_s and found[failed]["silence"]["alertmanager"] == am.url
        after = {why: counter(SILENCES_EXPIRED_EARLY.labels(why)) - n for why, n in before.items()}
        assert after == {"failed": 1, "deleted": 1, "succeeded": 1}
    finally:
        await leader.end()


async def test_alertmanager_away_at_the_outcome_is_retried_for_that_job_only(kube_double: KubeDouble, api, broker_settings: BrokerSettings, connection, tmp_path: Path) -> None:
    port = free_port()
    config = routes("http://127.0.0.1:9/a", "http://127.0.0.1:9/p")
    am = Alertmanager(tmp_path / "am", config, port=port).start()
    silenced, silence_id = await make(kube_double, api, am.url, "a")
    plain = SilencingHandler(kube_double, api, am.url, silenced_configmap(silence="false"))
    other = (await plain.handle(quota_alert(namespace="b"))).job
    await plain.close()
    leader = Leader(api, plain.handler.catalog, broker_settings, am.url)
    try:
        # Given Alertmanager gone when the silenced Job fails
        am.stop()
        kube_double.job_failed(silenced)
        kube_double.job_failed(other)
        # Then the other Job is recorded meanwhile, and the silenced one waits with its finalizer
        await async_wait_for(lambda: finished_with(kube_double, other), timeout_s=10, what="the other Job recorded")
        await asyncio.sleep(1.5)
        assert not finished_with(kube_double, silenced)
        # When Alertmanager is back (its state on disk), the silence is expired and the Job recorded
        back_at = time.monotonic()
        am.start()
        await async_wait_for(lambda: finished_with(kube_double, silenced), timeout_s=40, what="the silenced Job recorded")
        assert state(am, silence_id) == "expired"
        assert (await records(connection, broker_settings.queue_prefix))[silenced]["silence"]["action"] == "expired"
        assert time.monotonic() - back_at < 35  # the retry backs off to at most 30 s
    finally:
        await leader.end()
        am.close()


async def test_a_silence_past_its_end_is_not_waited_for(kube_double: KubeDouble, api, broker_settings: BrokerSettings, connection, tmp_path: Path) -> None:
    am = Alertmanager(tmp_path / "am", routes("http://127.0.0.1:9/a", "http://127.0.0.1:9/p")).start()
    # Given a silence of two seconds (deadline 1 s, margin 1 s), and its Alertmanager gone for good
    name, _ = await make(kube_double, api, am.url, "a", deadline_s=1, margin_s=1)
    am.close()
    leader = Leader(api, SilencingHandler(kube_double, api, am.url, silenced_configmap()).handler.catalog, broker_settings, am.url)
    try:
        kube_double.job_failed(name)
        # Then the Job is recorded once the silence has ended by itself, saying so
        await async_wait_for(lambda: finished_with(kube_double, name), timeout_s=15, what="recorded")
        assert (await records(connection, broker_settings.queue_prefix))[name]["silence"]["action"] == "ended"
    finally:
        await leader.end()
