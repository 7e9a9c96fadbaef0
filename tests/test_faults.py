"""Promises 1, 2 and 4 under the faults that need processes: a dispatcher killed or stopped mid-stream,
a broker restart, the outcome leader killed.

Each test runs the real processes against the real broker and the API
double, and ends by checking exactly one Job per alert and an empty work
queue. Retry tiers are shortened (tests.conftest.TEST_RETRY_DELAYS). API
errors, hangs and outages, which need no process, are tested in process
(tests/test_dispatching.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.conftest import wait_for
from tests.helpers import alerts, definition, expected, instances
from tests.harness import LEASE_ENV, Pipeline, counted_here, finished_with, leader, metrics, outcome, outcome_records, queue_depths, webhook
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
