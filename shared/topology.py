"""The broker topology, declared in this one place.

Every name derives from one prefix, so that installations and test runs can
share a broker. Declaring is idempotent: ingest and every dispatcher declare
the whole topology when they connect, with the same arguments.

    exchange <prefix>                 direct, durable
      -- "alert"    -->  <prefix>.work        quorum: the alerts to handle
      -- "alert"    -->  <prefix>.archive     stream: every alert received, kept
                                              for time-window replay
      -- "retry"    -->  <prefix>.work        (retries come back here)
      -- "dead"     -->  <prefix>.dead        quorum: what could not be handled
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
PRECONDITION_FAILED), so they are constants here, not settings. The one
exception is the archive's retention: it is set when the archive is first
declared and left as it is afterwards (change it with a policy).
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

ALERT_ROUTING_KEY = "alert"
RETRY_ROUTING_KEY = "retry"
DEAD_ROUTING_KEY = "dead"

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

    @staticmethod
    def delay_routing_key(delay_s: float) -> str:
        return f"delay.{delay_s:g}s"

    def delay_queue(self, delay_s: float) -> str:
        return f"{self.prefix}.{self.delay_routing_key(delay_s)}"

    def all_queues(self, delays_s: tuple[float, ...] = ()) -> list[str]:
        return [self.work_queue, self.dead_queue, self.archive, *(self.delay_queue(d) for d in delays_s)]


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


def work_queue_arguments(names: Names) -> dict[str, object]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": WORK_DELIVERY_LIMIT,
        "x-dead-letter-exchange": names.exchange,
        "x-dead-letter-routing-key": DEAD_ROUTING_KEY,
        # at-least-once dead-lettering needs reject-publish (facts.md).
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def delay_queue_arguments(names: Names, delay_s: float) -> dict[str, object]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": max(1, round(delay_s * 1000)),
        "x-dead-letter-exchange": names.exchange,
        "x-dead-letter-routing-key": RETRY_ROUTING_KEY,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def _declare_archive(
    connection: AbstractConnection, channel: AbstractChannel, names: Names, retention: Retention
) -> None:
    """Create the archive stream with ``retention`` unless it exists; bind it either way."""
    # A passive declare of a missing queue closes its channel: probe on a spare one.
    probe = await connection.channel(publisher_confirms=False)
    try:
        await probe.declare_queue(names.archive, passive=True)
        exists = True
    except aio_pika.exceptions.ChannelNotFoundEntity:
        exists = False  # the failed probe closed its own channel only
    finally:
        if not probe.is_closed:
            await probe.close()
    if exists:
        archive = await channel.get_queue(names.archive, ensure=False)
    else:
        archive = await channel.declare_queue(
            names.archive,
            durable=True,
            arguments={
                "x-queue-type": "stream",
                "x-max-age": retention.max_age,
                "x-max-length-bytes": retention.max_bytes,
            },
        )
    await archive.bind(names.exchange, routing_key=ALERT_ROUTING_KEY)


async def declare(
    connection: AbstractConnection,
    channel: AbstractChannel,
    names: Names,
    delays_s: tuple[float, ...] = (),
    retention: Retention = Retention(),
) -> Declared:
    """Declare the exchange, the queues, the archive and a delay queue per tier in ``delays_s``.

    Safe to repeat. The returned exchange and queues belong to ``channel``.
    """
    exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    await _declare_archive(connection, channel, names, retention)
    dead = await channel.declare_queue(names.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
    await dead.bind(exchange, routing_key=DEAD_ROUTING_KEY)
    work = await channel.declare_queue(names.work_queue, durable=True, arguments=work_queue_arguments(names))
    await work.bind(exchange, routing_key=ALERT_ROUTING_KEY)
    await work.bind(exchange, routing_key=RETRY_ROUTING_KEY)
    for delay in delays_s:
        queue = await channel.declare_queue(
            names.delay_queue(delay), durable=True, arguments=delay_queue_arguments(names, delay)
        )
        await queue.bind(exchange, routing_key=names.delay_routing_key(delay))
    return Declared(exchange=exchange, work_queue=work, dead_queue=dead)


async def delete(channel: AbstractChannel, names: Names, delays_s: tuple[float, ...] = ()) -> None:
    """Remove everything ``declare`` made (tests and uninstalls)."""
    for queue in names.all_queues(delays_s):
        await channel.queue_delete(queue)
    await channel.exchange_delete(names.exchange)
