"""Losing a broker node of a three-node cluster: nothing lost, nothing twice, no 503 window.

One cluster of the tests' own (tests.broker_cluster) serves every test
here. Each fault test runs ingest and two dispatchers at production
defaults against the cluster's round-robin balancer, places them on chosen
nodes (by taking the other nodes out of the balancer while a process
connects), posts webhooks of 5 distinct alerts every 100 ms for 15 s
(tests.posting), takes a node away 3 s in, and brings it back once posting
has ended. Then it sends again what got a 503, as Alertmanager does, and
checks every alert that was sent: exactly one Job each, empty queues, and
503 answers that ended while the node was still down, within a few seconds
of the fault.

A channel that starts publishing while a quorum queue elects a new leader
is nacked on every publish until it is closed (RabbitMQ 3.10, measured).
The election after a kill -9 lasts well under a second, so whether a new
channel lands in it is a matter of timing (about two runs in three here).
The leader-kill tests hold the election open for 2 s, by suspending one
surviving node's Raft member of the queue (the node itself keeps serving),
so that it surely does, and check from the logs that it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import pytest

from shared.settings import RetrySettings
from shared.topology import Names, declare, delete
from tests.broker_cluster import BrokerCluster
from tests.conftest import ROOT, wait_for, write_kubeconfig
from tests.harness import Pipeline, broker_call, queue_depths
from tests.kube_double import KubeDouble
from tests.own_broker import OwnBroker
from tests.posting import Answer, Poster, unavailable_windows
from tests.helpers import definition, instances

pytestmark = pytest.mark.e2e

POSTING_S = 15.0
FAULT_AT_S = 3.0
ELECTION_HELD_S = 2.0
# Every 503 must have been answered this soon after the fault: the node is still down then.
UNAVAILABLE_AT_MOST_S = 8.0


@pytest.fixture
def cluster(broker_cluster: BrokerCluster) -> Iterator[BrokerCluster]:
    yield broker_cluster
    broker_cluster.heal()  # the next test finds three nodes, whatever this one did


@pytest.fixture
def cluster_prefix(cluster: BrokerCluster, processes: list[Any]) -> Iterator[str]:
    name = f"oftest-{uuid.uuid4().hex[:10]}"
    yield name
    for process in processes:  # none may declare the queues again while they are deleted
        process.stop()
    cluster.heal()
    delays = RetrySettings().delays_s + (0.2, 0.5, 1.0)
    broker_call(cluster.url, lambda channel: delete(channel, Names(name), delays))


@pytest.fixture
def double(kube_double: KubeDouble) -> KubeDouble:
    kube_double.apply("configmaps", "default", definition("Broken"))
    return kube_double


@pytest.fixture
def env(cluster: BrokerCluster, cluster_prefix: str, double: KubeDouble, tmp_path) -> dict[str, str]:
    """The services' settings: production defaults but for where the broker and the API are."""
    return {
        "OPENFERO_AMQP_URL": cluster.url,
        "OPENFERO_QUEUE_PREFIX": cluster_prefix,
        "KUBECONFIG": str(write_kubeconfig(double, tmp_path)),
        "OPENFERO_METRICS_ADDR": "127.0.0.1:0",
        "OPENFERO_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


def start(
    cluster: BrokerCluster, env: dict[str, str], tmp_path, processes: list, ingest_on: OwnBroker, dispatchers_on: list[OwnBroker] | None = None
) -> Pipeline:
    """Ingest connected to ``ingest_on`` (it declares the topology first, so the queues' leaders are
    there too), then two dispatchers: on the nodes ``dispatchers_on`` names, else wherever the
    balancer sends them. All at production defaults."""
    with cluster.only(ingest_on):
        pipeline = Pipeline(processes, env, tmp_path, dispatchers=0)
        wait_for(lambda: cluster.node_of(pipeline.ingest.proc.pid) is ingest_on, what="ingest's connection in the management API")
    if dispatchers_on is None:
        pipeline.dispatchers += [pipeline.start_dispatcher(wait=False) for _ in range(2)]
        for dispatcher in pipeline.dispatchers:
            wait_for(lambda d=dispatcher: d.events("broker.connected"), what="dispatcher connected")
        return pipeline
    for node in dispatchers_on:
        with cluster.only(node):
            pipeline.dispatchers.append(pipeline.start_dispatcher())
            wait_for(lambda: cluster.node_of(pipeline.dispatchers[-1].proc.pid) is node, what="the dispatcher's connection")  # noqa: B023  # called within the iteration
    return pipeline


@contextlib.contextmanager
def in_background(work: Callable[[], Any]) -> Iterator[None]:
    """Run ``work`` in a thread while the block runs; wait for it (and raise its error) at the end."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if errors:
        raise errors[0]


def until(started: float, seconds: float) -> None:
    time.sleep(max(0.0, started + seconds - time.monotonic()))


def check_every_alert_has_one_job(cluster: BrokerCluster, poster: Poster, double: KubeDouble, prefix: str) -> None:
    poster.send_refused_again()
    expected = poster.instances()
    wait_for(lambda: len(double.jobs()) >= len(expected), timeout_s=90, what=f"{len(expected)} Jobs")
    wait_for(lambda: queue_depths(cluster.url, prefix)["work"] == 0, timeout_s=30, what="an empty work queue")
    assert instances(double) == expected  # each alert once: none lost, none twice
    assert queue_depths(cluster.url, prefix) == {"work": 0, "dead": 0}


def check_unavailable_ended_soon(answers: list[Answer], fault_at: float, what: str) -> None:
    refused = [a for a in answers if a.status != 200]
    late = [a for a in refused if a.answered > fault_at + UNAVAILABLE_AT_MOST_S]
    windows = [round(end - start, 2) for start, end in unavailable_windows(answers)]
    print(f"{what}: {len(refused)} of {len(answers)} webhooks refused; 503 windows {windows} s")
    assert not late, f"{len(late)} webhooks refused more than {UNAVAILABLE_AT_MOST_S} s after the fault, the last at +{late[-1].answered - fault_at:.1f} s"
    # and the node stayed away long after that, with webhooks taken all the while (how many depends on
    # the machine's load: each webhook waits for the one before)
    assert sum(1 for a in answers if a.sent > fault_at + UNAVAILABLE_AT_MOST_S and a.status == 200) >= 10


def declare_on(url: str, names: Names, delays_s: tuple[float, ...] = (), group_size: int = 3) -> None:
    """Declare openfero's topology as a service does, through ``url``."""

    async def run() -> None:
        connection = await aio_pika.connect(url)
        try:
            await declare(connection, await connection.channel(), names, delays_s, group_size=group_size)
        finally:
            await connection.close()

    asyncio.run(run())


def test_the_cluster_is_three_running_nodes_and_new_queues_get_three_members(cluster, cluster_prefix) -> None:
    names = Names(cluster_prefix)
    assert {n["name"]: n["running"] for n in cluster.api("/api/nodes")} == {n.node: True for n in cluster.nodes}
    declare_on(cluster.url, names, (1.0,))
    everyone = sorted(n.node for n in cluster.nodes)
    for queue in (names.work_queue, names.dead_queue, names.delay_queue(1.0), names.archive):
        members = wait_for(lambda q=queue: cluster.queue(q).get("members"), what=f"{queue}'s members")
        assert sorted(members) == everyone, queue


def test_killing_the_work_queue_leader_under_ingest_leaves_no_503_window(cluster, env, double, processes, tmp_path) -> None:
    n1, n2, n3 = cluster.nodes
    pipeline = start(cluster, env, tmp_path, processes, ingest_on=n1)
    # Given ingest connected to the node that holds the work queue's leader
    assert cluster.leader(Names(env["OPENFERO_QUEUE_PREFIX"]).work_queue) is n1
    started = time.monotonic()
    poster = Poster(pipeline.url + "/alerts").start()
    until(started, FAULT_AT_S)
    # When that node is killed, and ingest reconnects and publishes while the election is under way
    with cluster.election_held(n3, [Names(env["OPENFERO_QUEUE_PREFIX"]).work_queue], ELECTION_HELD_S):
        killed_at = time.monotonic()
        n1.kill(wait=False)
    until(started, POSTING_S)
    answers = poster.stop()
    with in_background(lambda: cluster.restart(n1)):
        # Then webhooks were refused for a few seconds at most, while the node stayed away
        check_unavailable_ended_soon(answers, killed_at, "leader killed")
        # because ingest's fresh channel, nacked in the election, was replaced by another one
        renewed = pipeline.ingest.events("broker.channel_renewed")
        assert any(e["reason"] == "nacked by the broker" for e in renewed), "ingest never published during the election"
        check_every_alert_has_one_job(cluster, poster, double, env["OPENFERO_QUEUE_PREFIX"])


def test_killing_a_follower_under_ingest_loses_nothing(cluster, env, double, processes, tmp_path) -> None:
    n1, n2, n3 = cluster.nodes
    names = Names(env["OPENFERO_QUEUE_PREFIX"])
    # Given the queues' leaders on one node and ingest connected to another
    declare_on(n1.url, names)
    pipeline = start(cluster, env, tmp_path, processes, ingest_on=n2)
    assert cluster.leader(names.work_queue) is n1
    started = time.monotonic()
    poster = Poster(pipeline.url + "/alerts").start()
    until(started, FAULT_AT_S)
    # When ingest's node is killed
    killed_at = time.monotonic()
    n2.kill()
    until(started, POSTING_S)
    answers = poster.stop()
    with in_background(lambda: cluster.restart(n2)):
        assert pipeline.ingest.events("broker.lost")
        check_unavailable_ended_soon(answers, killed_at, "follower killed")
        check_every_alert_has_one_job(cluster, poster, double, names.prefix)


def test_stopping_the_leaders_node_gracefully_loses_nothing(cluster, env, double, processes, tmp_path) -> None:
    n1, n2, n3 = cluster.nodes
    pipeline = start(cluster, env, tmp_path, processes, ingest_on=n1)
    assert cluster.leader(Names(env["OPENFERO_QUEUE_PREFIX"]).work_queue) is n1
    started = time.monotonic()
    poster = Poster(pipeline.url + "/alerts").start()
    until(started, FAULT_AT_S)
    # When the node with the leaders and ingest's connection is stopped, as in a rolling restart
    stopped_at = time.monotonic()
    n1.stop()
    until(started, POSTING_S)
    answers = poster.stop()
    with in_background(lambda: cluster.restart(n1)):
        assert pipeline.ingest.events("broker.lost")
        check_unavailable_ended_soon(answers, stopped_at, "leader stopped")
        check_every_alert_has_one_job(cluster, poster, double, env["OPENFERO_QUEUE_PREFIX"])


def test_a_dispatcher_whose_node_dies_mid_stream_loses_and_duplicates_nothing(cluster, env, double, processes, tmp_path) -> None:
    n1, n2, n3 = cluster.nodes
    names = Names(env["OPENFERO_QUEUE_PREFIX"])
    # Given ingest on the work queue's leader, dispatcher A on another node (it declares the
    # delay queues first, so their leaders are there) and dispatcher B beside ingest
    pipeline = start(cluster, {**env, "OPENFERO_KUBE_CONCURRENCY": "4"}, tmp_path, processes, ingest_on=n1, dispatchers_on=[n2, n1])
    a, b = pipeline.dispatchers
    assert cluster.leader(names.work_queue) is n1 and cluster.leader(names.delay_queue(1.0)) is n2
    started = time.monotonic()
    poster = Poster(pipeline.url + "/alerts").start()
    # and both dispatchers holding messages, the API having slowed down
    until(started, 1.0)
    double.add_fault("POST", r"/jobs$", status=0, delay_s=0.3)
    until(started, FAULT_AT_S)
    # When A's node dies, and the API answers 503 to the next 20 creates, so that retries are
    # published to delay queues whose leader is gone, during the election
    with cluster.election_held(n3, [names.delay_queue(1.0), names.delay_queue(5.0)], ELECTION_HELD_S):
        double.clear_faults()
        double.add_fault("POST", r"/jobs$", status=503, times=20)
        killed_at = time.monotonic()
        n2.kill(wait=False)
    until(started, POSTING_S)
    answers = poster.stop()
    with in_background(lambda: cluster.restart(n2)):
        # Then A lost its connection with messages in hand, which the broker handed out again
        assert a.events("broker.lost")
        handled = pipeline.dispatcher_events("job.created") + pipeline.dispatcher_events("job.duplicate")
        assert any(e["redelivered"] for e in handled), "no message was in A's hands when its node died"
        # and the retries were published again where the broker nacked them
        renewed = pipeline.dispatcher_events("broker.channel_renewed")
        assert any(e["reason"] == "nacked by the broker" for e in renewed), "no retry was published during the election"
        assert b.events("message.retry") and b.events("message.unsettled") == []
        check_unavailable_ended_soon(answers, killed_at, "dispatcher's node killed")
        check_every_alert_has_one_job(cluster, poster, double, names.prefix)
        assert pipeline.dispatcher_events("message.dead") == []
        print(f"renewed channels: dispatcher A {len(a.events('broker.channel_renewed'))}, B {len(b.events('broker.channel_renewed'))}; "
              f"redelivered {sum(1 for e in handled if e['redelivered'])}; duplicates suppressed {len(pipeline.dispatcher_events('job.duplicate'))}")


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openfero", "doctor", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_doctor_finds_queues_with_too_few_members_and_its_commands_mend_them(cluster, cluster_prefix) -> None:
    n1, n2, n3 = cluster.nodes
    names = Names(cluster_prefix)
    env = {"OPENFERO_AMQP_URL": cluster.url, "OPENFERO_QUEUE_PREFIX": cluster_prefix, "OPENFERO_MANAGEMENT_URL": n2.management_url}
    # Given two queues made with one member, as when the cluster was not complete yet
    for queue in (names.dead_queue, names.delay_queue(1.0)):
        broker_call(n1.url, lambda channel, q=queue: channel.declare_queue(q, durable=True, arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": 1}))
    # and openfero's own declaration, which leaves existing queues as they are
    declare_on(cluster.url, names, (1.0,))
    # When the doctor looks (once the broker has reported the new queues' members)
    result = wait_for(lambda: (r := doctor(env, "--json")).returncode == 1 and "not reported yet" not in r.stdout and r, what="a report")
    report = json.loads(result.stdout)
    # Then it names both, with the members they have and want, and exits 1
    by_name = {q["name"]: q for q in report["queues"]}
    assert (len(by_name[names.dead_queue]["members"]), by_name[names.dead_queue]["wanted"]) == (1, 3)
    assert by_name[names.delay_queue(1.0)]["status"] == "1 of 3 members"
    assert by_name[names.work_queue]["status"] == by_name[names.archive]["status"] == "ok"
    assert report["problems"] == [f"{names.dead_queue}: 1 of 3 members", f"{names.delay_queue(1.0)}: 1 of 3 members"]
    text = doctor(env).stdout
    assert re.search(rf"^{re.escape(names.dead_queue)} +quorum +1 +3 +1 ", text, re.M) and "rabbitmq-queues grow" in text
    # When the operator runs the commands it printed for the dead-letter queue
    for command in by_name[names.dead_queue]["fixes"]:
        tool, *args = shlex.split(command)
        n1.ctl(*args, tool=tool)
    wait_for(lambda: len(cluster.queue(names.dead_queue).get("members", [])) == 3, what="the dead-letter queue grown")
    # and then the grow commands, for every quorum queue of the installation at once
    for command in report["grow_commands"]:
        tool, *args = shlex.split(command)
        n1.ctl(*args, tool=tool)
    # Then the doctor finds all well
    result = wait_for(lambda: (r := doctor(env)).returncode == 0 and r, what="all well")
    assert "all well" in result.stdout
    assert sorted(cluster.queue(names.delay_queue(1.0))["members"]) == sorted(n.node for n in cluster.nodes)
