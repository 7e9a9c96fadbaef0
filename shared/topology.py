"""The broker topology, declared in this one place.

Every name derives from one prefix, so that installations and test runs can
share a broker. Declaring is idempotent: ingest and every dispatcher declare
the whole topology when they connect, with the same arguments.

    exchange <prefix>            direct, durable
      -- "alert" -->  queue <prefix>.work   quorum: the alerts to handle
      -- "dead"  -->  queue <prefix>.dead   quorum: what could not be handled

The work queue dead-letters into the dead queue, at least once: a message
rejected without requeue, or redelivered more than ``WORK_DELIVERY_LIMIT``
times (a message that kills its worker again and again), moves there with
the broker's own ``x-death`` header saying why.

Queue arguments cannot change once a queue exists (the broker answers
PRECONDITION_FAILED), so they are constants here, not settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

ALERT_ROUTING_KEY = "alert"
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

    def all_queues(self) -> list[str]:
        return [self.work_queue, self.dead_queue]


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


async def declare(channel: AbstractChannel, names: Names) -> Declared:
    """Declare the exchange and queues and bind them; safe to repeat."""
    exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    dead = await channel.declare_queue(names.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
    await dead.bind(exchange, routing_key=DEAD_ROUTING_KEY)
    work = await channel.declare_queue(names.work_queue, durable=True, arguments=work_queue_arguments(names))
    await work.bind(exchange, routing_key=ALERT_ROUTING_KEY)
    return Declared(exchange=exchange, work_queue=work, dead_queue=dead)


async def delete(channel: AbstractChannel, names: Names) -> None:
    """Remove everything ``declare`` made (tests and uninstalls)."""
    for queue in names.all_queues():
        await channel.queue_delete(queue)
    await channel.exchange_delete(names.exchange)
