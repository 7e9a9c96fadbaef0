"""Operators replay alerts: from the dead-letter queue after a fix, and from the archive over a time window."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import aio_pika
import pytest

from shared.envelope import envelopes_from_webhook
from shared.topology import DEAD_ROUTING_KEY, Names
from tests.conftest import ROOT, wait_for
from tests.harness import Pipeline, broker_call, queue_depths, webhook
from tests.helpers import alerts, definition, expected, instances, openfero, openfero_json
from tests.inprocess import RecordingSink, running_dispatcher


@pytest.fixture
def env(double_env) -> dict[str, str]:
    return double_env


BROKEN = "kind: Job\nspec: [unclosed"


@pytest.mark.e2e
def test_after_a_definition_is_fixed_dlq_replay_creates_exactly_their_jobs(processes, env, tmp_path, kube_double, amqp_url, prefix) -> None:
    # Given a broken definition that sends its alerts to the dead-letter queue
    kube_double.apply("configmaps", "default", definition("Broken", BROKEN))
    kube_double.apply("configmaps", "default", definition("Other", BROKEN))
    pipeline = Pipeline(processes, env, tmp_path)
    assert pipeline.post(webhook(alerts(5) + alerts(2, alertname="Other", start=100)))[0] == 200
    wait_for(lambda: queue_depths(amqp_url, prefix)["dead"] == 7, what="7 dead letters")
    listed = openfero_json(env, "dlq", "list", "--alertname", "Broken")
    assert listed["matched"] == 5 and listed["read"] == 7
    assert {d["reason"].split(":")[0] for d in listed["dead_letters"]} == {"RenderError"}
    assert all(d["attempts"] == 1 and d["status"] == "firing" for d in listed["dead_letters"])
    code, table = openfero(env, "dlq", "list")
    assert code == 0 and "not valid YAML" in table and "7 of 7 dead letters matched" in table
    shown = openfero_json(env, "dlq", "show", listed["dead_letters"][0]["id"])
    assert shown["headers"]["openfero-error-class"] == "RenderError"
    assert shown["body"]["alert"]["labels"]["alertname"] == "Broken"
    assert queue_depths(amqp_url, prefix)["dead"] == 7  # looking takes nothing away
    # When the definition is fixed and its dead letters are replayed
    kube_double.apply("configmaps", "default", definition("Broken"))
    wait_for(lambda: pipeline.dispatcher.events("definitions.changed"), what="the fix to arrive")
    assert openfero_json(env, "dlq", "replay", "--alertname", "Broken", "--dry-run")["matched"] == 5
    assert queue_depths(amqp_url, prefix)["dead"] == 7
    replayed = openfero_json(env, "dlq", "replay", "--reason", "yaml", "--label", "alertname=Broken")
    assert (replayed["matched"], replayed["done"], replayed["skipped"]) == (5, 5, 2)
    # Then exactly their Jobs exist, and the other dead letters are still there
    wait_for(lambda: len(kube_double.jobs()) == 5, what="5 Jobs")
    wait_for(lambda: queue_depths(amqp_url, prefix) == {"work": 0, "dead": 2}, what="the queues to settle")
    assert instances(kube_double) == expected(5)
    created = pipeline.dispatcher.events("job.created")
    assert len(created) == 5 and all(e["attempt"] == 1 for e in created)  # attempts were reset
    # and purge removes what is left, saying how many
    assert openfero(env, "dlq", "purge")[0] == 2  # usage error without --yes
    assert openfero_json(env, "dlq", "purge", "--yes", "--alertname", "Other")["done"] == 2
    assert queue_depths(amqp_url, prefix)["dead"] == 0


def _fill_dead_letter_queue(amqp_url: str, prefix: str, count: int) -> set[str]:
    payload = {"alerts": [{"labels": {"alertname": "Dead", "n": str(n)}} for n in range(count)]}
    envelopes = envelopes_from_webhook(payload)

    async def publish(channel: aio_pika.abc.AbstractChannel) -> None:
        exchange = await channel.get_exchange(Names(prefix).exchange)
        for start in range(0, count, 500):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(e.to_json(), message_id=e.id, headers={"openfero-attempts": 8, "openfero-error": "x"}),
                        routing_key=DEAD_ROUTING_KEY,
                    )
                    for e in envelopes[start : start + 500]
                )
            )

    broker_call(amqp_url, publish)
    return {e.id for e in envelopes}


def _ids(amqp_url: str, queue: str) -> list[str]:
    async def drain(channel: aio_pika.abc.AbstractChannel) -> list[str]:
        declared = await channel.declare_queue(queue, passive=True)
        ids = []
        while (m := await declared.get(no_ack=True, fail=False)) is not None:
            ids.append(m.message_id)
        return ids

    return broker_call(amqp_url, drain)


@pytest.mark.e2e
def test_a_dlq_replay_killed_halfway_loses_nothing_and_a_second_run_finishes(env, amqp_url, prefix, processes, tmp_path) -> None:
    # Given a pipeline (for the topology) and 2000 dead letters
    Pipeline(processes, env, tmp_path, dispatchers=0)
    names = Names(prefix)
    all_ids = _fill_dead_letter_queue(amqp_url, prefix, 2000)
    assert queue_depths(amqp_url, prefix) == {"work": 0, "dead": 2000}
    # When a replay is killed with SIGKILL part of the way through
    replay = subprocess.Popen([sys.executable, "-m", "openfero", "dlq", "replay"], cwd=ROOT, env={**__import__("os").environ, **env})
    try:
        wait_for(lambda: 0 < queue_depths(amqp_url, prefix)["work"] < 2000, timeout_s=60, what="replay under way")
    finally:
        replay.send_signal(signal.SIGKILL)
        replay.wait()
    time.sleep(0.5)  # the broker takes back what the dead connection held
    depths = queue_depths(amqp_url, prefix)
    assert 0 < depths["work"] < 2000, "the replay was not interrupted part of the way"
    # Then every alert is in one queue or the other
    moved = _ids(amqp_url, names.work_queue)
    still_dead = _still_dead(amqp_url, names)
    assert set(moved) | set(still_dead) == all_ids
    wait_for(lambda: queue_depths(amqp_url, prefix)["dead"] == len(still_dead), what="the peeked letters back")
    # and a second run moves the rest
    code, output = openfero(env, "dlq", "replay")
    assert code == 0, output
    assert queue_depths(amqp_url, prefix)["dead"] == 0
    assert set(moved) | set(_ids(amqp_url, names.work_queue)) == all_ids


def _still_dead(amqp_url: str, names: Names) -> list[str]:
    """Ids in the dead-letter queue, left in place."""

    async def peek(channel: aio_pika.abc.AbstractChannel) -> list[str]:
        declared = await channel.declare_queue(names.dead_queue, passive=True)
        ids = []
        while (m := await declared.get(no_ack=False, fail=False)) is not None:
            ids.append(m.message_id)
        return ids  # unacknowledged: back in the queue when the channel closes

    return broker_call(amqp_url, peek)


async def test_replay_from_the_archive_over_a_window(amqp_url, prefix) -> None:
    env = {"OPENFERO_AMQP_URL": amqp_url, "OPENFERO_QUEUE_PREFIX": prefix}

    async def replay(*args: str) -> dict:
        return await asyncio.to_thread(openfero_json, env, "replay", *args)

    sink = RecordingSink()
    async with running_dispatcher(amqp_url, prefix, [definition("Broken")], sink) as running:
        # Given three webhooks, received one after the other
        for n in range(3):
            await running.post(webhook(alerts(3, start=n * 3)))
            await asyncio.sleep(1.2)
        await running.settled(9)
        archived = await asyncio.to_thread(_archived, env)
        received = sorted({e["receivedAt"] for e in archived})
        assert len(received) == 3  # one time per webhook
        window = ["--since", received[1], "--until", received[2]]

        # --dry-run says what the window holds and changes nothing; the edges are [since, until)
        dry = await replay(*window, "--dry-run")
        assert sorted(a["id"] for a in dry["alerts"]) == sorted(e["id"] for e in archived if e["receivedAt"] == received[1])
        assert dry["matched"] == 3 and dry["done"] == 0
        await asyncio.sleep(0.5)
        assert (await running.depths())["work"] == 0 and not running.events("job.duplicate")

        # filters select exactly
        by_label = await replay("--since", received[0], "--label", "instance=i4", "--dry-run")
        assert [a["fingerprint"] for a in by_label["alerts"]] == [_fingerprint_of("i4")]
        assert (await replay("--since", received[0], "--fingerprint", _fingerprint_of("i7"), "--dry-run"))["matched"] == 1
        assert (await replay("--since", received[0], "--alertname", "Nope", "--dry-run"))["matched"] == 0
        assert (await replay("--since", received[0], "--status", "resolved", "--dry-run"))["matched"] == 0
        assert (await replay("--since", received[0], "--dry-run"))["matched"] == 9

        # replaying what already ran creates nothing new, twice over
        for run in (1, 2):
            assert (await replay(*window))["done"] == 3
            await running.settled(9 + 3 * run)
            assert len(running.events("job.duplicate")) == 3 * run
        assert len(sink.jobs) == 9
        # --force runs the remediation again, with new names
        forced = await replay(*window, "--force")
        assert forced["done"] == 3 and forced["run_id"]
        await running.settled(18)
        assert await running.dead_depth() == 0
    again = [j for j in sink.jobs if j["metadata"]["annotations"].get("openfero.io/run-id") == forced["run_id"]]
    assert len(sink.jobs) == 12 and sorted(instances_of(again)) == ["i3", "i4", "i5"]


def instances_of(jobs: list[dict]) -> list[str]:
    return [next(e["value"] for e in j["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "OPENFERO_INSTANCE") for j in jobs]


def _archived(env: dict[str, str]) -> list[dict]:
    """Every alert in the archive, with its receive time and id."""
    found = openfero_json(env, "replay", "--since", "1h", "--dry-run")["alerts"]
    return [{"id": a["id"], "receivedAt": a["when"], "fingerprint": a["fingerprint"]} for a in found]


def _fingerprint_of(instance: str) -> str:
    from shared.envelope import fingerprint

    return fingerprint({"alertname": "Broken", "instance": instance})


def test_dead_letters_are_replayed_and_purged_by_message_id(env, amqp_url, prefix) -> None:
    # Given three dead letters (the exchange and queues declared as the services declare them)
    from shared.topology import declare

    async def declared() -> None:
        connection = await aio_pika.connect(amqp_url)
        await declare(connection, await connection.channel(), Names(prefix))
        await connection.close()

    asyncio.run(declared())
    first, second, third = sorted(_fill_dead_letter_queue(amqp_url, prefix, 3))
    # When one is replayed and one purged by id, as the console does
    replayed = openfero_json(env, "dlq", "replay", "--id", first)
    purged = openfero_json(env, "dlq", "purge", "--yes", "--id", second, "--id", "not-there")
    # Then exactly those went, and an id not there is no error
    assert (replayed["matched"], replayed["done"], replayed["ids"]) == (1, 1, [first])
    assert (purged["matched"], purged["done"], purged["ids"]) == (1, 1, [second])
    assert _ids(amqp_url, Names(prefix).dead_queue) == [third]
    assert _ids(amqp_url, Names(prefix).work_queue) == [first]
