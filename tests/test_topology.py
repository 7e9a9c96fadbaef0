"""The queue topology on the real broker: routing, delay tiers, the delivery-limit backstop."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest

from shared.topology import (
    ALERT_ROUTING_KEY,
    DEAD_ROUTING_KEY,
    RETRY_ROUTING_KEY,
    WORK_DELIVERY_LIMIT,
    Names,
    declare,
    delay_queue_arguments,
    work_queue_arguments,
)
from tests.conftest import queue_depth

# Tiers the prefix fixture knows to delete: one of the tests', one of the defaults.
DELAYS = (0.2, 1800.0)


async def test_declaring_twice_is_harmless_and_names_follow_the_prefix(connection, channel, prefix) -> None:
    first = await declare(connection, channel, Names(prefix), DELAYS)
    again = await declare(connection, channel, Names(prefix), DELAYS)
    assert first.work_queue.name == again.work_queue.name == f"{prefix}.work"
    assert first.dead_queue.name == f"{prefix}.dead"
    assert Names(prefix).delay_queue(0.2) == f"{prefix}.delay.0.2s"
    assert Names(prefix).delay_queue(120) == f"{prefix}.delay.120s"


async def test_alerts_and_retries_reach_the_work_queue_and_dead_letters_the_dead_queue(connection, channel, prefix) -> None:
    declared = await declare(connection, channel, Names(prefix), DELAYS)
    for key in (ALERT_ROUTING_KEY, RETRY_ROUTING_KEY, DEAD_ROUTING_KEY):
        await declared.exchange.publish(aio_pika.Message(key.encode()), routing_key=key)
    assert await queue_depth(channel, f"{prefix}.work") == 2
    assert await queue_depth(channel, f"{prefix}.dead") == 1


async def test_a_short_delay_is_never_held_up_by_a_long_one(connection, channel, prefix) -> None:
    names = Names(prefix)
    declared = await declare(connection, channel, names, DELAYS)
    # Given a message waiting 30 min published first, then one waiting 0.2 s
    await declared.exchange.publish(aio_pika.Message(b"long"), routing_key=names.delay_routing_key(1800.0))
    await declared.exchange.publish(aio_pika.Message(b"short"), routing_key=names.delay_routing_key(0.2))
    started = time.monotonic()
    # Then the short one is back in the work queue after its own delay
    while await queue_depth(channel, names.work_queue) == 0:
        assert time.monotonic() - started < 5, "the short delay was held up"
        await asyncio.sleep(0.05)
    message = await declared.work_queue.get(no_ack=True)
    assert message.body == b"short"
    assert time.monotonic() - started >= 0.15
    assert await queue_depth(channel, names.delay_queue(1800.0)) == 1


async def test_a_message_requeued_past_the_delivery_limit_is_dead_lettered(connection, channel, prefix) -> None:
    declared = await declare(connection, channel, Names(prefix))
    await declared.exchange.publish(aio_pika.Message(b"kills its worker"), routing_key=ALERT_ROUTING_KEY)
    # Each crash hands it back: WORK_DELIVERY_LIMIT deliveries and then one more
    for _ in range(WORK_DELIVERY_LIMIT + 1):
        message = await declared.work_queue.get(timeout=5)
        await message.nack(requeue=True)
    await asyncio.sleep(0.3)
    dead = await declared.dead_queue.get(no_ack=True, timeout=5)
    assert dead.body == b"kills its worker"
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
    assert await queue_depth(channel, f"{prefix}.work") == 0


async def test_new_queues_get_the_initial_group_size_and_existing_ones_keep_their_arguments(connection, channel, prefix) -> None:
    names = Names(prefix)
    # Given a dead-letter queue made by an earlier version, without an initial group size
    await channel.declare_queue(names.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
    # When the topology is declared with 3 replicas wanted (this broker is a single node: it accepts 3)
    await declare(connection, channel, names, DELAYS, group_size=3)
    # Then the existing queue was not declared again with other arguments (that would be PRECONDITION_FAILED):
    # declaring it with its old arguments still works
    await channel.declare_queue(names.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
    # and the queues it created carry the group size: without it, the broker refuses the same declaration
    for queue, arguments in ((names.work_queue, work_queue_arguments(names)), (names.delay_queue(0.2), delay_queue_arguments(names, 0.2))):
        probe = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed, match="x-quorum-initial-group-size"):
            await probe.declare_queue(queue, durable=True, arguments=arguments)
    probe = await connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed, match="x-initial-cluster-size"):
        await probe.declare_queue(names.archive, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "7D", "x-max-length-bytes": 5 * 1024**3})
    # and declaring again changes nothing
    await declare(connection, channel, names, DELAYS, group_size=3)
