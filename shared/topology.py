"""The broker topology, declared in this one place.

Every name derives from one prefix, so that installations and test runs can
share a broker. Declaring is idempotent: ingest and every dispatcher declare
the whole topology when they connect, with the same arguments.

    exchange <prefix>                 direct, durable
      -- "alert"    -->  <prefix>.work        quorum: the alerts to handle
      -- "alert"    -->  <prefix>.archive     stream: every alert received, kept
                                              for time-window replay
      -- "outcome"  -->  <prefix>.outcomes    stream: how each Job ended, as the
                                              outcome leader recorded it (the
                                              archive's retention)
      -- "retry"    -->  <prefix>.work        (retries come back here)
      -- "dead"     -->  <prefix>.dead        quorum: what could not be handled
      -- "wait"     -->  <prefix>.wait        quorum: alerts over a concurrency or
                                              the global limit, until the wait
                                              leader releases them (storm control)
      -- "parked"   -->  <prefix>.parked      quorum: alerts of definitions whose
                                              breaker is open, until replayed
      -- "delay.5s" -->  <prefix>.delay.5s    quorum, one per retry tier: a
                         message waits out the tier's TTL, then is
                         dead-lettered back with routing key "retry"

Retries have their own routing key so that what is bound to "alert" besides
the work queue sees each alert once. Each delay tier has a fixed TTL: expiry
happens only at the head of a queue, so one TTL per queue means a long wait
never holds up a short one.

The work queue dead-letters into the dead queue, at least once: a message
rejected without requeue, or redelivered more than ``WORK_DELIVERY_LIMIT``
times (a message that kills its worker again and again), moves there with
the broker's own ``x-death`` header saying why. Dispatchers dead-letter by
publishing to "dead" with headers of their own (``shared.headers``).

Queue arguments cannot change once a queue exists (the broker answers
PRECONDITION_FAILED), so they are constants here, not settings. Two things
are settings because they only ever apply to a queue that does not exist
yet: the archive's retention, and how many replicas a queue starts with
(``x-quorum-initial-group-size``; ``x-initial-cluster-size`` for the
archive). So every queue is looked up passively first and declared only
when it is missing; an existing queue is used as it is, whatever arguments
an earlier version gave it (change those with a policy, and grow replicas
with ``rabbitmq-queues grow``: ``openfero doctor`` says when).
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue, FieldValue

ALERT_ROUTING_KEY = "alert"
RETRY_ROUTING_KEY = "retry"
DEAD_ROUTING_KEY = "dead"
OUTCOME_ROUTING_KEY = "outcome"
WAIT_ROUTING_KEY = "wait"
PARKED_ROUTING_KEY = "parked"

# Each requeue counts, crashes and lost channels included; after this many a
# message is dead-lettered rather than taking down worker after worker.
WORK_DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Names:
    prefix: str

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def work_queue(self) -> str:
        return f"{self.prefix}.work"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def archive(self) -> str:
        return f"{self.prefix}.archive"

    @property
    def outcomes(self) -> str:
        return f"{self.prefix}.outcomes"

    @property
    def wait_queue(self) -> str:
        return f"{self.prefix}.wait"

    @property
    def parked_queue(self) -> str:
        return f"{self.prefix}.parked"

    @staticmethod
    def delay_routing_key(delay_s: float) -> str:
        return f"delay.{delay_s:g}s"

    def delay_queue(self, delay_s: float) -> str:
        return f"{self.prefix}.{self.delay_routing_key(delay_s)}"

    def all_queues(self, delays_s: tuple[float, ...] = ()) -> list[str]:
        return [self.work_queue, self.dead_queue, self.archive, self.outcomes, self.wait_queue, self.parked_queue, *(self.delay_queue(d) for d in delays_s)]


@dataclass(frozen=True)
class Retention:
    """How much of the alert archive to keep: RabbitMQ's stream x-max-age and x-max-length-bytes."""

    max_age: str = "7D"
    max_bytes: int = 5 * 1024**3


@dataclass(frozen=True)
class Declared:
    exchange: AbstractExchange
    work_queue: AbstractQueue
    dead_queue: AbstractQueue


def work_queue_arguments(names: Names) -> dict[str, FieldValue]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": WORK_DELIVERY_LIMIT,
        "x-dead-letter-exchange": names.exchange,
        "x-dead-letter-routing-key": DEAD_ROUTING_KEY,
        # at-least-once dead-lettering needs reject-publish (facts.md).
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def delay_queue_arguments(names: Names, delay_s: float) -> dict[str, FieldValue]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": max(1, round(delay_s * 1000)),
        "x-dead-letter-exchange": names.exchange,
        "x-dead-letter-routing-key": RETRY_ROUTING_KEY,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def stream_arguments(retention: Retention, group_size: int) -> dict[str, FieldValue]:
    """The archive's and the outcome stream's: the same retention, so an alert and its outcome go together."""
    return {
        "x-queue-type": "stream",
        "x-max-age": retention.max_age,
        "x-max-length-bytes": retention.max_bytes,
        "x-initial-cluster-size": group_size,
    }


class _Lookup:
    """Passive lookups of queues. A lookup of a missing queue closes the channel it was made
    on, so they run on a spare channel of their own, opened again after each miss."""

    def __init__(self, connection: AbstractConnection):
        self._connection = connection
        self._channel: AbstractChannel | None = None

    async def exists(self, name: str) -> bool:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        try:
            await self._channel.declare_queue(name, passive=True)
            return True
        except aio_pika.exceptions.ChannelNotFoundEntity:
            self._channel = None  # the broker closed it
            return False

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


async def _ensure_queue(channel: AbstractChannel, lookup: _Lookup, name: str, arguments: dict[str, FieldValue]) -> AbstractQueue:
    """The queue ``name``: created with ``arguments`` when missing, else as it is."""
    if await lookup.exists(name):
        return await channel.get_queue(name, ensure=False)
    return await channel.declare_queue(name, durable=True, arguments=arguments)


async def declare(
    connection: AbstractConnection,
    channel: AbstractChannel,
    names: Names,
    delays_s: tuple[float, ...] = (),
    retention: Retention = Retention(),
    group_size: int = 3,
) -> Declared:
    """Declare the exchange, the queues, the archive, the outcome stream and a delay queue per tier in ``delays_s``.

    Queues that do not exist yet are created with ``group_size`` replicas
    (the broker places no more than it has nodes). Safe to repeat. The
    returned exchange and queues belong to ``channel``.
    """
    exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    quorum = {"x-quorum-initial-group-size": group_size}
    lookup = _Lookup(connection)
    try:
        archive = await _ensure_queue(
            channel,
            lookup,
            names.archive,
            stream_arguments(retention, group_size),
        )
        outcomes = await _ensure_queue(channel, lookup, names.outcomes, stream_arguments(retention, group_size))
        dead = await _ensure_queue(channel, lookup, names.dead_queue, {"x-queue-type": "quorum", **quorum})
        work = await _ensure_queue(channel, lookup, names.work_queue, {**work_queue_arguments(names), **quorum})
        # No TTL and no delivery limit: a waiting or parked alert stays until it is released or replayed.
        wait = await _ensure_queue(channel, lookup, names.wait_queue, {"x-queue-type": "quorum", **quorum})
        parked = await _ensure_queue(channel, lookup, names.parked_queue, {"x-queue-type": "quorum", **quorum})
        delays = [
            (delay, await _ensure_queue(channel, lookup, names.delay_queue(delay), {**delay_queue_arguments(names, delay), **quorum}))
            for delay in delays_s
        ]
    finally:
        await lookup.close()
    await archive.bind(exchange, routing_key=ALERT_ROUTING_KEY)
    await outcomes.bind(exchange, routing_key=OUTCOME_ROUTING_KEY)
    await dead.bind(exchange, routing_key=DEAD_ROUTING_KEY)
    await work.bind(exchange, routing_key=ALERT_ROUTING_KEY)
    await work.bind(exchange, routing_key=RETRY_ROUTING_KEY)
    await wait.bind(exchange, routing_key=WAIT_ROUTING_KEY)
    await parked.bind(exchange, routing_key=PARKED_ROUTING_KEY)
    for delay, queue in delays:
        await queue.bind(exchange, routing_key=names.delay_routing_key(delay))
    return Declared(exchange=exchange, work_queue=work, dead_queue=dead)


async def delete(channel: AbstractChannel, names: Names, delays_s: tuple[float, ...] = ()) -> None:
    """Remove everything ``declare`` made (tests and uninstalls)."""
    for queue in names.all_queues(delays_s):
        await channel.queue_delete(queue)
    await channel.exchange_delete(names.exchange)
