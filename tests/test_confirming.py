"""Publishing until confirmed (shared.confirming) against the real broker: nacks, returns, closed channels.

The broker nacks a message routed to a full queue with ``x-overflow:
reject-publish``, and returns one that no queue is bound for: both are
made here on purpose, on routing keys of the test's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shared.broker import BrokerLink
from shared.confirming import NotConfirmed, publish_confirmed
from shared.settings import BrokerSettings
from tests.conftest import async_wait_for, queue_depth

FULL_KEY = "full"


@pytest.fixture
async def link(broker_settings: BrokerSettings) -> AsyncIterator[BrokerLink]:
    link = BrokerLink(broker_settings)
    task = asyncio.create_task(link.run())
    await async_wait_for(link.ready.is_set, what="the link connected")
    yield link
    await link.close()
    await asyncio.wait_for(task, 10)  # run() returns once closed


@pytest.fixture
async def full_queue(link: BrokerLink, channel: aio_pika.abc.AbstractChannel, prefix: str) -> AsyncIterator[str]:
    """A queue bound to FULL_KEY that holds one message and refuses more (the broker nacks them).

    A classic queue: a quorum queue enforces its length limit a little late, and takes a second message."""
    name = f"{prefix}.full"
    queue = await channel.declare_queue(name, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    await queue.bind(prefix, routing_key=FULL_KEY)
    exchange = await channel.get_exchange(prefix)
    await exchange.publish(aio_pika.Message(b"first"), routing_key=FULL_KEY)
    yield name
    await channel.queue_delete(name)


def message(text: str = "alert") -> aio_pika.Message:
    return aio_pika.Message(text.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def test_a_nacked_publish_is_tried_again_on_a_fresh_channel_until_confirmed(link, full_queue, channel) -> None:
    first = await link.publishing_exchange()
    attempts: list[str] = []
    # Given a queue the broker nacks every publish to, until a consumer makes room after 0.5 s
    queue = await channel.get_queue(full_queue, ensure=False)

    async def make_room() -> None:
        await asyncio.sleep(0.5)
        await queue.get(no_ack=True)

    room = asyncio.create_task(make_room())
    # When a message is published to it
    await publish_confirmed(link, [(message("second"), FULL_KEY)], timeout_s=5, attempts=attempts)
    await room
    # Then it was nacked, published again on fresh channels, and finally stored
    assert attempts and set(attempts) == {"nacked by the broker"}
    assert await link.publishing_exchange() is not first
    got = await queue.get(no_ack=True)
    assert got.body == b"second"


async def test_nacked_until_the_deadline_is_not_confirmed(link, full_queue, channel) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NotConfirmed, match=r"did not confirm within 1 s .*nacked by the broker"):
        await publish_confirmed(link, [(message(), FULL_KEY)], timeout_s=1)
    assert 1 <= loop.time() - started < 3
    assert await queue_depth(channel, full_queue) == 1  # only the first message


async def test_a_returned_message_is_published_again_once_a_queue_is_bound(link, channel, prefix) -> None:
    # Given a routing key no queue is bound for yet, and one bound 0.3 s later
    name = f"{prefix}.late"
    attempts: list[str] = []

    async def bind_late() -> None:
        await asyncio.sleep(0.3)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(prefix, routing_key="late")

    binding = asyncio.create_task(bind_late())
    try:
        await publish_confirmed(link, [(message(), "late")], timeout_s=5, attempts=attempts)
        await binding
        assert "returned as unroutable" in attempts
        assert await queue_depth(channel, name) == 1
    finally:
        await channel.queue_delete(name)


async def test_a_closed_publishing_channel_is_replaced(link, channel, prefix) -> None:
    used = await link.publishing_exchange()
    await used.channel.close()
    await publish_confirmed(link, [(message(), "alert")], timeout_s=5)
    assert await link.publishing_exchange() is not used
    assert await queue_depth(channel, f"{prefix}.work") == 1


async def test_a_publish_no_longer_wanted_stops_at_once(link, full_queue) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NotConfirmed, match="no longer wanted"):
        await publish_confirmed(link, [(message(), FULL_KEY)], timeout_s=10, wanted=lambda: False)
    assert loop.time() - started < 1


async def test_many_publishes_failing_together_renew_the_channel_once(link, full_queue) -> None:
    # Given 50 publishes nacked at the same moment on the same channel
    first = await link.publishing_exchange()
    results = await asyncio.gather(
        *(publish_confirmed(link, [(message(), FULL_KEY)], timeout_s=0.15) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, NotConfirmed) for r in results)
    # Then one fresh channel replaced the first one, not fifty
    second = await link.publishing_exchange()
    assert second is not first and not second.channel.is_closed
