"""Promises 1, 2 and 4 under API faults, in process: the real dispatcher on the real broker.

Each test runs the consuming loop, the handler and the retry and
dead-letter decisions as the service runs them (tests.inprocess), with
webhooks stored as ingest stores them. Where the test is about the API's
answers, Jobs go through the real JobCreator to the API double; else to
a RecordingSink. Retry tiers are shortened (tests.conftest.TEST_RETRY_DELAYS).
What needs processes (crash, SIGTERM, broker restart) is in tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from kubernetes import client

from dispatcher.jobs import JobCreator
from dispatcher.results import Failure
from shared.settings import KubeSettings
from tests.conftest import reference_alert_bytes, reference_configmap
from tests.harness import webhook
from tests.helpers import alerts, definition, expected, instances, job_definition, job_env
from tests.inprocess import RecordingSink, running_dispatcher
from tests.kube_double import KubeDouble


@pytest.fixture
def double(kube_double: KubeDouble) -> KubeDouble:
    kube_double.apply("configmaps", "default", definition("Broken"))
    return kube_double


@pytest.fixture
def creator(api: client.ApiClient) -> Iterator[JobCreator]:
    """Jobs created through the API double, with the client timeout the subprocess tests give (1 s)."""
    jobs = JobCreator(api, KubeSettings(job_namespace="default", request_timeout_s=1), concurrency=16)
    yield jobs
    jobs.close()


async def test_api_errors_and_hangs_are_retried_until_every_job_exists(double: KubeDouble, creator: JobCreator, amqp_url: str, prefix: str) -> None:
    # Given an API that answers 500, 503 and 429, then hangs past the client timeout
    double.add_fault("POST", r"/jobs$", status=500, times=5)
    double.add_fault("POST", r"/jobs$", status=503, times=5)
    double.add_fault("POST", r"/jobs$", status=429, times=5, retry_after_s=1)
    double.add_fault("POST", r"/jobs$", status=0, times=3, delay_s=2.5)
    async with running_dispatcher(amqp_url, prefix, [definition("Broken")], creator, max_attempts=12) as running:
        assert await running.post(webhook(alerts(20))) == 20
        # Then every Job is created in the end, once
        await running.settled(20, timeout_s=60)
        assert instances(double) == expected(20)
        # and the retries are counted, each with its cause
        retries = running.events("message.retry")
        statuses = [r.get("http_status") for r in retries]
        assert statuses.count(500) == 5 and statuses.count(503) == 5 and statuses.count(429) == 5
        assert sum(1 for r in retries if r["http_status"] is None and "timed out" in r["msg"].lower()) >= 1
        assert all(r["delay_s"] >= 1 for r in retries if r.get("http_status") == 429)  # Retry-After honoured
        assert dict(running.dispatcher.outcomes) == {"created": 20, "retried": len(retries)}
        assert await running.dead_depth() == 0


async def test_an_outage_longer_than_the_retry_budget_dead_letters_with_the_reason(double: KubeDouble, creator: JobCreator, amqp_url: str, prefix: str) -> None:
    double.add_fault("POST", r"/jobs$", status=503)  # for good
    async with running_dispatcher(amqp_url, prefix, [definition("Broken")], creator, max_attempts=4) as running:
        await running.post(webhook(alerts(10)))
        await running.settled(10)
        dead = await running.dead_letters()
    assert sorted(json.loads(m.body)["alert"]["labels"]["instance"] for m in dead) == expected(10)
    for m in dead:
        assert m.headers["openfero-dead-reason"] == "retries-exhausted"
        assert m.headers["openfero-error-class"] == "ApiUnavailable"
        assert m.headers["openfero-http-status"] == 503
        assert m.headers["openfero-attempts"] == 4
        assert m.headers["openfero-first-failure"] < m.headers["openfero-last-failure"]
        assert m.headers["openfero-worker"].endswith(f"/{os.getpid()}")
        assert "gave up after 4 attempts" in m.headers["openfero-error"]
    assert double.jobs() == []


async def test_permanent_failures_go_straight_to_the_dead_letter_queue(double: KubeDouble, creator: JobCreator, amqp_url: str, prefix: str) -> None:
    double.add_fault("POST", r"/jobs$", status=422, times=1)
    configmaps = [definition("Broken"), definition("NotYaml", "kind: Job\nspec: [unclosed")]
    async with running_dispatcher(amqp_url, prefix, configmaps, creator) as running:
        await running.post(webhook(alerts(1, alertname="NotYaml") + alerts(1, alertname="Broken")))
        await running.settled(2)
        by_class = {m.headers["openfero-error-class"]: m for m in await running.dead_letters()}
        assert running.events("message.retry") == []
    assert set(by_class) == {"RenderError", "ApiRejected"}
    assert "not valid YAML" in by_class["RenderError"].headers["openfero-error"]
    assert by_class["ApiRejected"].headers["openfero-http-status"] == 422
    assert all(m.headers["openfero-attempts"] == 1 and m.headers["openfero-dead-reason"] == "permanent" for m in by_class.values())
    assert double.jobs() == []


async def test_the_same_webhook_three_times_makes_one_job_per_alert(double: KubeDouble, creator: JobCreator, amqp_url: str, prefix: str) -> None:
    async with running_dispatcher(amqp_url, prefix, [definition("Broken")], creator) as running:
        body = webhook(alerts(10))
        for _ in range(3):
            await running.post(body)
        await running.settled(30)
        # Then the API's 409 for the same name makes the later deliveries duplicates
        assert len(running.events("job.created")) == 10 and len(running.events("job.duplicate")) == 20
    assert instances(double) == expected(10)


async def test_a_failure_that_passes_is_retried_on_each_tier_then_its_job_made(amqp_url: str, prefix: str) -> None:
    # Given a sink that fails three times as an API that is away fails
    sink = RecordingSink()
    sink.fail(Failure.from_api(None, "Kubernetes API unreachable: refused"), times=3)
    async with running_dispatcher(amqp_url, prefix, [definition("Broken")], sink) as running:
        await running.post(webhook(alerts(1)))
        await running.settled(1)
        # Then each retry waits the next tier, and the fourth attempt makes the Job
        assert [r["delay_s"] for r in running.events("message.retry")] == [0.2, 0.5, 1.0]
        assert all(r["error_class"] == "ApiUnavailable" and r["http_status"] is None for r in running.events("message.retry"))
        [created] = running.events("job.created")
        assert created["attempt"] == 4 and created["job"] == sink.names()[0]
    assert sink.calls == 4 and len(sink.jobs) == 1


async def test_an_alert_with_no_definition_is_acknowledged_and_makes_nothing(amqp_url: str, prefix: str) -> None:
    sink = RecordingSink()
    async with running_dispatcher(amqp_url, prefix, [definition("Broken")], sink) as running:
        await running.post(webhook(alerts(3, alertname="Unknown")))
        await running.settled(3)
        assert dict(running.dispatcher.outcomes) == {"no_definition": 3}
        assert await running.dead_depth() == 0
    assert sink.calls == 0


async def test_a_group_with_resolved_alerts_gets_one_job_per_alert_from_its_own_status(amqp_url: str, prefix: str) -> None:
    # Given a definition for DiskFull firing and one for DiskFull resolved
    configmaps = [
        {"metadata": {"name": f"openfero-diskfull-{status}", "labels": {"app": "openfero"}}, "data": {"DiskFull": job_definition(f"disk-{status}", f"fix-{status}")}}
        for status in ("firing", "resolved")
    ]
    alerts = [
        {"labels": {"alertname": "DiskFull", "node": f"n{i}"}, "status": "resolved" if i % 4 == 0 else "firing", "startsAt": "2025-01-01T00:00:00Z"}
        for i in range(24)
    ]
    sink = RecordingSink()
    async with running_dispatcher(amqp_url, prefix, configmaps, sink) as running:
        # When one webhook of a firing group carries both
        assert await running.post(json.dumps({"status": "firing", "alerts": alerts}).encode()) == 24
        await running.settled(24)
    # Then each alert's Job comes from the definition of its own status
    by_node = {job_env(job)["OPENFERO_NODE"]: job for job in sink.jobs}
    assert len(by_node) == 24
    for a in alerts:
        job = by_node[a["labels"]["node"]]
        assert job["metadata"]["name"].startswith(f"disk-{a['status']}-")
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == f"fix-{a['status']}"
        assert job["metadata"]["labels"]["openfero.io/status"] == a["status"]


async def test_an_undecodable_message_is_dead_lettered_and_the_next_alert_handled(amqp_url: str, prefix: str) -> None:
    sink = RecordingSink()
    async with running_dispatcher(amqp_url, prefix, [reference_configmap()], sink) as running:
        # Given a message no ingest wrote
        await running.publish_raw(b"\x00 not json")
        await running.settled(1)
        # When an alert follows it
        await running.post(reference_alert_bytes())
        await running.settled(2)
        [dead] = await running.dead_letters()
        [logged] = running.events("message.dead")
    # Then the poison is a dead letter that says why, and the alert has its Job
    assert dead.body == b"\x00 not json"
    assert (dead.headers["openfero-error-class"], dead.headers["openfero-dead-reason"]) == ("InvalidEnvelope", "permanent")
    assert "undecodable message" in logged["msg"]
    assert len(sink.jobs) == 1 and job_env(sink.jobs[0])["OPENFERO_ALERTNAME"] == "KubeQuotaAlmostFull"
