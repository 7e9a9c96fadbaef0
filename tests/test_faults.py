"""Promises 1, 2 and 4 under faults: crashes, broker restarts, API errors and outages.

Each test runs the real processes against the real broker and the API
double, and ends by checking exactly one Job per alert and an empty work
queue. Retry tiers are shortened (tests.conftest.TEST_RETRY_DELAYS).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.conftest import wait_for
from tests.helpers import alerts, definition, expected, instances
from tests.harness import LEASE_ENV, Pipeline, counted_here, dead_letters, finished_with, leader, metrics, outcome, outcome_records, queue_depths, webhook
from tests.kube_double import KubeDouble
from tests.own_broker import OwnBroker

pytestmark = pytest.mark.e2e


@pytest.fixture
def double(kube_double: KubeDouble) -> KubeDouble:
    kube_double.apply("configmaps", "default", definition("Broken"))
    return kube_double


@pytest.fixture
def env(double_env) -> dict[str, str]:
    return {**double_env, "OPENFERO_KUBE_TIMEOUT_SECONDS": "1"}


def test_a_dispatcher_killed_mid_stream_loses_nothing_and_duplicates_nothing(processes, env, tmp_path, double, amqp_url, prefix) -> None:
    # Given two dispatchers and an API slow enough that work is in flight
    double.add_fault("POST", r"/jobs$", status=0, delay_s=0.02)
    pipeline = Pipeline(processes, {**env, "OPENFERO_PREFETCH": "50"}, tmp_path, dispatchers=2)
    for batch in range(5):
        assert pipeline.post(webhook(alerts(100, start=batch * 100)))[0] == 200
    # When one is killed with SIGKILL halfway through
    wait_for(lambda: len(double.jobs()) >= 150, what="150 Jobs")
    os.kill(pipeline.dispatchers[0].proc.pid, signal.SIGKILL)
    # Then the other creates the rest, and every alert has exactly one Job
    wait_for(lambda: len(double.jobs()) >= 500, timeout_s=90, what="500 Jobs")
    wait_for(lambda: queue_depths(amqp_url, prefix)["work"] == 0, what="an empty work queue")
    assert instances(double) == expected(500)
    assert queue_depths(amqp_url, prefix) == {"work": 0, "dead": 0}


def test_a_broker_restart_loses_no_webhook_that_got_200(processes, env, tmp_path, double) -> None:
    broker = OwnBroker()
    try:
        broker.start()
        env = {**env, "OPENFERO_AMQP_URL": broker.url, "OPENFERO_PUBLISH_TIMEOUT_SECONDS": "2"}
        pipeline = Pipeline(processes, env, tmp_path, dispatchers=1)
        accepted: list[int] = []
        refused: list[int] = []
        stop = threading.Event()

        def keep_posting() -> None:
            n = 0
            while not stop.is_set():
                status, _ = pipeline.post(webhook(alerts(5, start=n * 5)))
                (accepted if status == 200 else refused).append(n)
                n += 1
                time.sleep(0.05)

        poster = threading.Thread(target=keep_posting)
        poster.start()
        try:
            wait_for(lambda: len(accepted) >= 10, what="webhooks before the restart")
            # When the broker node stops and comes back while webhooks keep arriving
            broker.stop()
            wait_for(lambda: len(refused) >= 3, what="webhooks refused while the broker is down")
            broker.start()
            wait_for(lambda: len(accepted) >= len(refused) + 25, timeout_s=60, what="webhooks after the restart")
        finally:
            stop.set()
            poster.join()
        # Alertmanager sends again what got 503
        for n in refused:
            wait_for(lambda n=n: pipeline.post(webhook(alerts(5, start=n * 5)))[0] == 200, what=f"webhook {n} accepted")
        # Then every alert of every webhook has exactly one Job
        total = (len(accepted) + len(refused)) * 5
        wait_for(lambda: len(double.jobs()) >= total, timeout_s=60, what=f"{total} Jobs")
        assert instances(double) == expected(total)
        assert queue_depths(broker.url, env["OPENFERO_QUEUE_PREFIX"]) == {"work": 0, "dead": 0}
        assert pipeline.dispatcher.events("broker.lost")
    finally:
        broker.remove()


def test_api_errors_and_hangs_are_retried_until_every_job_exists(processes, env, tmp_path, double, amqp_url, prefix) -> None:
    # Given an API that answers 500, 503 and 429, then hangs past the client timeout
    double.add_fault("POST", r"/jobs$", status=500, times=5)
    double.add_fault("POST", r"/jobs$", status=503, times=5)
    double.add_fault("POST", r"/jobs$", status=429, times=5, retry_after_s=1)
    double.add_fault("POST", r"/jobs$", status=0, times=3, delay_s=2.5)
    pipeline = Pipeline(processes, {**env, "OPENFERO_RETRY_MAX_ATTEMPTS": "12"}, tmp_path)
    assert pipeline.post(webhook(alerts(20)))[0] == 200
    # Then every Job is created in the end, once
    wait_for(lambda: len(double.jobs()) >= 20, timeout_s=60, what="20 Jobs")
    wait_for(lambda: queue_depths(amqp_url, prefix)["work"] == 0, what="an empty work queue")
    assert instances(double) == expected(20)
    # and the retries are counted, each with its cause
    retries = pipeline.dispatcher_events("message.retry")
    statuses = [r.get("http_status") for r in retries]
    assert statuses.count(500) == 5 and statuses.count(503) == 5 and statuses.count(429) == 5
    assert sum(1 for r in retries if r["http_status"] is None and "timed out" in r["msg"].lower()) >= 1
    assert all(r["delay_s"] >= 1 for r in retries if r.get("http_status") == 429)  # Retry-After honoured
    assert queue_depths(amqp_url, prefix) == {"work": 0, "dead": 0}


def test_an_outage_longer_than_the_retry_budget_dead_letters_with_the_reason(processes, env, tmp_path, double, amqp_url, prefix) -> None:
    double.add_fault("POST", r"/jobs$", status=503)  # for good
    pipeline = Pipeline(processes, env, tmp_path)
    assert pipeline.post(webhook(alerts(10)))[0] == 200
    wait_for(lambda: queue_depths(amqp_url, prefix)["dead"] == 10, timeout_s=60, what="10 dead letters")
    dead = dead_letters(amqp_url, prefix)
    assert sorted(json.loads(m.body)["alert"]["labels"]["instance"] for m in dead) == expected(10)
    for m in dead:
        assert m.headers["openfero-dead-reason"] == "retries-exhausted"
        assert m.headers["openfero-error-class"] == "ApiUnavailable"
        assert m.headers["openfero-http-status"] == 503
        assert m.headers["openfero-attempts"] == 4  # OPENFERO_RETRY_MAX_ATTEMPTS in the tests
        assert m.headers["openfero-first-failure"] < m.headers["openfero-last-failure"]
        assert m.headers["openfero-worker"].endswith(f"/{pipeline.dispatcher.proc.pid}")
        assert "gave up after 4 attempts" in m.headers["openfero-error"]
    assert double.jobs() == [] and queue_depths(amqp_url, prefix)["work"] == 0


def test_permanent_failures_go_straight_to_the_dead_letter_queue(processes, env, tmp_path, double, amqp_url, prefix) -> None:
    double.apply("configmaps", "default", definition("NotYaml", "kind: Job\nspec: [unclosed"))
    double.add_fault("POST", r"/jobs$", status=422, times=1)
    pipeline = Pipeline(processes, env, tmp_path)
    assert pipeline.post(webhook(alerts(1, alertname="NotYaml") + alerts(1, alertname="Broken")))[0] == 200
    wait_for(lambda: queue_depths(amqp_url, prefix)["dead"] == 2, what="2 dead letters")
    by_class = {m.headers["openfero-error-class"]: m for m in dead_letters(amqp_url, prefix)}
    assert set(by_class) == {"RenderError", "ApiRejected"}
    assert "not valid YAML" in by_class["RenderError"].headers["openfero-error"]
    assert by_class["ApiRejected"].headers["openfero-http-status"] == 422
    assert all(m.headers["openfero-attempts"] == 1 for m in by_class.values())
    assert pipeline.dispatcher_events("message.retry") == []
    assert double.jobs() == [] and queue_depths(amqp_url, prefix)["work"] == 0


def test_the_same_webhook_three_times_makes_one_job_per_alert(processes, env, tmp_path, double, amqp_url, prefix) -> None:
    pipeline = Pipeline(processes, env, tmp_path)
    body = webhook(alerts(10))
    for _ in range(3):
        assert pipeline.post(body)[0] == 200
    wait_for(lambda: len(pipeline.dispatcher_events("job.duplicate")) == 20, what="20 duplicates suppressed")
    assert instances(double) == expected(10)
    assert len(pipeline.dispatcher_events("job.created")) == 10
    assert queue_depths(amqp_url, prefix) == {"work": 0, "dead": 0}


@pytest.mark.parametrize("grace_s", ["20", "0.3"], ids=["finishes-in-grace", "hands-back-after-grace"])
def test_sigterm_stops_a_busy_dispatcher_cleanly_and_loses_nothing(processes, env, tmp_path, double, amqp_url, prefix, grace_s) -> None:
    # Given a dispatcher busy with slow creates
    double.add_fault("POST", r"/jobs$", status=0, delay_s=0.5)
    pipeline = Pipeline(
        processes,
        {**env, "OPENFERO_KUBE_TIMEOUT_SECONDS": "5", "OPENFERO_KUBE_CONCURRENCY": "4", "OPENFERO_SHUTDOWN_GRACE_SECONDS": grace_s},
        tmp_path,
    )
    assert pipeline.post(webhook(alerts(40)))[0] == 200
    wait_for(lambda: double.jobs(), what="the first Jobs")
    # When it gets SIGTERM, it exits 0 within the grace period
    started = time.monotonic()
    first = pipeline.dispatcher
    assert first.stop() == 0
    assert time.monotonic() - started < float(grace_s) + 5
    [draining] = first.events("dispatcher.draining")
    assert draining["in_flight"] > 0
    [stopped] = first.events("dispatcher.stopped")
    if grace_s == "0.3":
        assert stopped["outcomes"]["created"] < 40  # the rest was handed back
    # and a new dispatcher finishes what was handed back, with no Job twice
    double.clear_faults()
    pipeline.dispatchers.append(pipeline.start_dispatcher())
    wait_for(lambda: len(double.jobs()) >= 40, what="40 Jobs")
    wait_for(lambda: queue_depths(amqp_url, prefix)["work"] == 0, what="an empty work queue")
    assert instances(double) == expected(40)
    assert queue_depths(amqp_url, prefix) == {"work": 0, "dead": 0}


def test_the_outcome_leader_killed_mid_stream_loses_no_outcome_and_counts_none_twice(processes, env, tmp_path, double, amqp_url, prefix) -> None:
    # Given two dispatchers and 60 Jobs, all of which end at once
    pipeline = Pipeline(processes, {**env, **LEASE_ENV}, tmp_path, dispatchers=2)
    assert pipeline.post(webhook(alerts(60)))[0] == 200
    wait_for(lambda: len(double.jobs()) == 60, what="60 Jobs")
    names = [job["metadata"]["name"] for job in double.jobs()]
    first = leader(pipeline)
    for n, name in enumerate(names):
        double.job_failed(name) if n % 3 == 0 else double.job_succeeded(name)
    # When the leader is killed (SIGKILL) while it records them
    wait_for(lambda: sum(finished_with(double, n) for n in names) >= 10, what="the first outcomes recorded")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    time.sleep(0.3)  # what it sent before it died has landed
    marked_by_first = {n for n in names if outcome(double, n)}
    assert 10 <= len(marked_by_first) < 60
    # Then the other takes over once the Lease expires and records the rest
    survivor = leader(pipeline)
    wait_for(lambda: all(finished_with(double, n) for n in names), timeout_s=30, what="all 60 recorded")
    # every Job marked with its outcome, the dead leader's marks kept and finished
    assert [outcome(double, n) for n in names] == ["Failed" if n % 3 == 0 else "Succeeded" for n in range(60)]
    # counted once: the survivor counted exactly what the dead leader had not marked
    # (the dead leader's counts died with its metrics; a mark whose answer it never read it did not count)
    assert counted_here([survivor]) == {n: 1 for n in names if n not in marked_by_first}
    assert set(counted_here([first])) <= marked_by_first and set(counted_here([first]).values()) <= {1}
    survivor_metrics = metrics(survivor)
    assert survivor_metrics["openfero_jobs_succeeded_total{}"] + survivor_metrics["openfero_jobs_failed_total{}"] == 60 - len(marked_by_first)
    # and a record of each on the broker (one the dead leader may have published twice is read once), an Event of each
    assert {r["job"]: r["outcome"] for r in outcome_records(amqp_url, prefix)} == {name: outcome(double, name) for name in names}
    assert sorted(e["related"]["name"] for e in double.list("events", "default")) == sorted(names)
