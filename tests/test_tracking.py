"""Following Jobs to their end, in process: the tracker and its leader against the API double and the real broker.

The tests play the Job controller (tests.kube_double: job_started,
job_succeeded, job_failed) and delete Jobs as a user would; the double
keeps a Job with a finalizer until it is removed and answers stale writes
with 409, as a real API server does.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from dispatcher.catalog import Catalog
from dispatcher.jobs import JobCreator, OperariusStatusWriter
from dispatcher.leading import LeaderElector
from dispatcher.metrics import JOBS_FAILED, JOBS_SUCCEEDED, REMEDIATIONS
from dispatcher.rendering import FINALIZER_OUTCOME, JobRules, render
from dispatcher.reporting import EventWriter, RecordPublisher
from dispatcher.tracking import OutcomeTracker
from openfero.history import read_stream
from shared.broker import BrokerLink
from shared.envelope import envelopes_from_webhook
from shared.settings import BrokerSettings, KubeSettings
from shared.topology import Names
from tests.conftest import ROOT, async_wait_for, reference_configmap
from tests.helpers import SHORT_LEASE_TIMES
from tests.kube_double import KubeDouble

OPERARIUS = yaml.safe_load((ROOT / "k8s" / "examples" / "podcrashlooping.operarius.yaml").read_text())
CONFIGMAP = "openfero-kubequotaalmostfull-firing"


@pytest.fixture
def catalog(kube_double: KubeDouble) -> Catalog:
    """The reference ConfigMap and the shipped Operarius, in the cluster and known to the dispatcher."""
    configmap = kube_double.apply("configmaps", "default", reference_configmap())
    operarius = kube_double.apply("operariuses", "default", OPERARIUS)
    found = Catalog()
    found.replace_configmaps([configmap])
    found.replace_operarii([operarius])
    return found


def crashloop(pod: str) -> Any:
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod}, "startsAt": "2026-01-01T00:00:00Z"}]})
    return envelope


def quota(n: int) -> Any:
    [envelope] = envelopes_from_webhook({"alerts": [{"labels": {"alertname": "KubeQuotaAlmostFull", "namespace": f"ns{n}"}, "startsAt": "2026-01-01T00:00:00Z"}]})
    return envelope


class Leader:
    """One dispatcher's outcome tracking: its leader election, tracker and broker link."""

    def __init__(self, api: client.ApiClient, catalog: Catalog, broker: BrokerSettings, identity: str):
        self.link = BrokerLink(broker)
        self.status = OperariusStatusWriter(api, 2)
        self.elector = LeaderElector(api, "default", "oftest-outcomes", identity, SHORT_LEASE_TIMES, 2)
        self.tracker = OutcomeTracker(api, "default", catalog, RecordPublisher(self.link), identity, self.status, EventWriter(api, identity, 2), timeout_s=2)
        self.stop = asyncio.Event()
        self.tasks = [
            asyncio.create_task(self.link.run()),
            asyncio.create_task(self.elector.run(self.stop)),
            asyncio.create_task(self.tracker.run(self.elector, self.stop)),
        ]

    @property
    def leads(self) -> bool:
        return self.elector.leading.is_set()

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks[1:]), 15)
        await self.link.close()
        self.tasks[0].cancel()
        await asyncio.gather(self.tasks[0], return_exceptions=True)
        self.status.close()


@dataclass
class Cluster:
    kube: KubeDouble
    api: client.ApiClient
    catalog: Catalog
    broker: BrokerSettings

    async def create(self, envelope: Any) -> str:
        found = self.catalog.lookup(envelope.alert)
        assert found.definition is not None
        job = render(found.definition, envelope, JobRules(60, "default", track_outcomes=True))
        creator = JobCreator(self.api, KubeSettings(job_namespace="default", request_timeout_s=2), concurrency=1)
        try:
            assert await creator.create(job.body)
        finally:
            creator.close()
        return job.name

    def job(self, name: str) -> dict[str, Any] | None:
        return self.kube.get("jobs", "default", name)

    def finished_with(self, name: str) -> bool:
        """Whether the tracker is done with the Job: its finalizer is off, or the Job is gone."""
        job = self.job(name)
        return job is None or FINALIZER_OUTCOME not in (job["metadata"].get("finalizers") or [])

    def outcome(self, name: str) -> str | None:
        job = self.job(name)
        return (job or {}).get("metadata", {}).get("annotations", {}).get("openfero.io/outcome")

    def events(self) -> dict[str, dict[str, Any]]:
        """The Events, by the Job they are about."""
        return {e["related"]["name"]: e for e in self.kube.list("events", "default")}

    async def records(self, connection: Any) -> list[dict[str, Any]]:
        from datetime import datetime, timedelta, timezone

        found = await read_stream(connection, Names(self.broker.queue_prefix).outcomes, datetime.now(timezone.utc) - timedelta(hours=1))
        return [json.loads(body) for body, _, _ in found]


@pytest.fixture
def cluster(kube_double, api, catalog, broker_settings) -> Cluster:
    return Cluster(kube_double, api, catalog, broker_settings)


def counter(metric: Any) -> float:
    return metric._value.get()


async def test_each_ending_is_counted_once_and_recorded_with_status_event_and_record(cluster: Cluster, connection) -> None:
    leader = Leader(cluster.api, cluster.catalog, cluster.broker, "leader")
    try:
        await async_wait_for(lambda: leader.leads, what="a leader")
        succeeded_before, failed_before = counter(JOBS_SUCCEEDED), counter(JOBS_FAILED)
        by_definition = {(d, o): counter(REMEDIATIONS.labels(d, o)) for d in (CONFIGMAP, "pod-crashloop-restart") for o in ("succeeded", "failed", "deleted")}
        # Given three Jobs: a ConfigMap's that succeeds, an Operarius' that runs out of time, one deleted while it runs
        ok, late, gone = await cluster.create(quota(1)), await cluster.create(crashloop("web-1")), await cluster.create(quota(2))
        assert cluster.job(ok)["metadata"]["finalizers"] == [FINALIZER_OUTCOME]  # type: ignore[index]
        cluster.kube.job_started(late)
        await async_wait_for(lambda: (cluster.kube.get("operariuses", "default", "pod-crashloop-restart").get("status") or {}).get("lastExecutionStatus") == "Running", what="Running")
        cluster.kube.job_started(gone)
        # When the Job controller ends them, and someone deletes the third
        ended_at = time.monotonic()
        cluster.kube.job_succeeded(ok)
        cluster.kube.job_failed(late, reason="DeadlineExceeded")
        assert cluster.kube.delete("jobs", "default", gone) is not None  # the finalizer holds it
        await async_wait_for(lambda: all(cluster.finished_with(n) for n in (ok, late, gone)), timeout_s=10, what="all three finished with")
        lag_s = time.monotonic() - ended_at
        # Then each is marked on the Job, and the deleted one is gone once recorded
        assert (cluster.outcome(ok), cluster.outcome(late), cluster.job(gone)) == ("Succeeded", "Failed", None)
        # counted once: the Go original's counters and openfero's by definition
        assert (counter(JOBS_SUCCEEDED) - succeeded_before, counter(JOBS_FAILED) - failed_before) == (1, 1)
        after = {k: counter(REMEDIATIONS.labels(*k)) - v for k, v in by_definition.items()}
        assert {k: v for k, v in after.items() if v} == {(CONFIGMAP, "succeeded"): 1, ("pod-crashloop-restart", "failed"): 1, (CONFIGMAP, "deleted"): 1}
        assert dict(leader.tracker.counted) == {"Succeeded": 1, "Failed": 1, "Deleted": 1}
        # the Operarius status as the Go original writes it (the creations were not written: no dispatcher here)
        status = cluster.kube.get("operariuses", "default", "pod-crashloop-restart")["status"]
        assert (status["lastExecutedJobName"], status["lastExecutionStatus"], status["lastOutcome"]) == (late, "Failed", "Failed")
        # an Event for each, on the definition
        events = cluster.events()
        assert {name: (e["reason"], e["involvedObject"]["kind"], e["involvedObject"]["name"]) for name, e in events.items()} == {
            ok: ("RemediationSucceeded", "ConfigMap", CONFIGMAP),
            late: ("RemediationFailed", "Operarius", "pod-crashloop-restart"),
            gone: ("RemediationDeleted", "ConfigMap", CONFIGMAP),
        }
        assert "DeadlineExceeded" in events[late]["message"] and events[late]["involvedObject"]["uid"]
        # and a record each on the broker
        records = {r["job"]: r for r in await cluster.records(connection)}
        assert {n: (r["outcome"], r["reason"]) for n, r in records.items()} == {
            ok: ("Succeeded", "CompletionsReached"),
            late: ("Failed", "DeadlineExceeded"),
            gone: ("Deleted", "DeletedBeforeFinishing"),
        }
        assert records[late]["alertname"] == "KubePodCrashLooping" and records[late]["definitionName"] == "pod-crashloop-restart"
        assert lag_s < 10  # a loose bound: the figure is in the README
    finally:
        await leader.end()


async def test_a_job_marked_by_a_leader_that_died_is_finished_without_counting_it_again(cluster: Cluster, connection) -> None:
    # Given a Job that ended, marked by a leader that died before it removed the finalizer
    name = await cluster.create(quota(3))
    cluster.kube.job_succeeded(name)
    job = cluster.job(name)
    assert job is not None
    job["metadata"]["annotations"]["openfero.io/outcome"] = "Succeeded"
    cluster.kube.apply("jobs", "default", job)
    before = counter(JOBS_SUCCEEDED)
    # When a new leader starts
    leader = Leader(cluster.api, cluster.catalog, cluster.broker, "successor")
    try:
        await async_wait_for(lambda: cluster.finished_with(name), timeout_s=10, what="the Job finished with")
        # Then it finishes the Job (record, Event, finalizer) and counts nothing
        assert counter(JOBS_SUCCEEDED) == before and not leader.tracker.counted
        assert [r["job"] for r in await cluster.records(connection)] == [name]
        assert cluster.events()[name]["reason"] == "RemediationSucceeded"
    finally:
        await leader.end()


async def test_conflicts_and_errors_on_the_job_are_tried_again_and_count_once(cluster: Cluster, connection) -> None:
    leader = Leader(cluster.api, cluster.catalog, cluster.broker, "leader")
    try:
        await async_wait_for(lambda: leader.leads, what="a leader")
        a, b = await cluster.create(quota(4)), await cluster.create(quota(5))
        # Given the API answering the first writes to each Job with 409 and 500
        cluster.kube.add_fault("PATCH", rf"/jobs/{a}$", status=409, times=2)
        cluster.kube.add_fault("PATCH", rf"/jobs/{b}$", status=500, times=2)
        cluster.kube.job_failed(a)
        cluster.kube.job_succeeded(b)
        await async_wait_for(lambda: cluster.finished_with(a) and cluster.finished_with(b), timeout_s=15, what="both finished with")
        assert (cluster.outcome(a), cluster.outcome(b)) == ("Failed", "Succeeded")
        assert dict(leader.tracker.counted) == {"Failed": 1, "Succeeded": 1}
        assert sorted(r["job"] for r in await cluster.records(connection)) == sorted([a, b])
    finally:
        await leader.end()


async def test_with_two_leaders_in_turn_every_outcome_is_counted_once(cluster: Cluster, connection) -> None:
    first, second = Leader(cluster.api, cluster.catalog, cluster.broker, "first"), Leader(cluster.api, cluster.catalog, cluster.broker, "second")
    try:
        await async_wait_for(lambda: first.leads or second.leads, what="a leader")
        leader, other = (first, second) if first.leads else (second, first)
        names = [await cluster.create(quota(10 + n)) for n in range(20)]
        # Half end while the first leader leads
        for name in names[:10]:
            cluster.kube.job_succeeded(name)
        await async_wait_for(lambda: all(cluster.finished_with(n) for n in names[:10]), timeout_s=10, what="the first half")
        # the rest end while it hands over
        for name in names[10:]:
            cluster.kube.job_failed(name)
        await leader.end()
        await async_wait_for(lambda: other.leads, timeout_s=5, what="the other leads")
        await async_wait_for(lambda: all(cluster.finished_with(n) for n in names), timeout_s=15, what="all finished with")
        counted = leader.tracker.counted + other.tracker.counted
        assert dict(counted) == {"Succeeded": 10, "Failed": 10}
        assert [cluster.outcome(n) for n in names] == ["Succeeded"] * 10 + ["Failed"] * 10
        records = await cluster.records(connection)
        assert sorted({r["uid"] for r in records}) == sorted(cluster.job(n)["metadata"]["uid"] for n in names)  # type: ignore[index]
    finally:
        await first.end() if not first.stop.is_set() else None
        await second.end() if not second.stop.is_set() else None
