"""Publishing that ends in the broker's confirm, or in ``NotConfirmed`` at a deadline.

The rule: a message counts as stored only once the broker acked it. Every
other answer means "not stored yet" and the message is published again
until the deadline: a nack or a returned message (on a fresh channel, since
the old one may go on refusing: see ``shared.broker``), a closed channel
(on a fresh one), a lost connection (once the link has reconnected). A
publish whose confirm was lost may have reached the queue: publishing it
again duplicates it, which the dispatcher's deterministic Job names make
harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.exceptions import DeliveryError, PublishError

from shared.broker import BrokerLink

# Pauses between attempts: short at first (a fresh channel usually works at
# once), growing so that a broker that keeps refusing is not flooded.
FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 0.5


class NotConfirmed(Exception):
    """Not every message was confirmed before the deadline."""


def persistent_copy(message: aio_pika.abc.AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """A persistent copy of ``message`` with ``headers`` instead of its own: what a dispatcher
    publishes to move a message (a retry, a dead letter, a waiting alert released)."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
    )


def why_failed(error: BaseException) -> tuple[str, bool]:
    """(the reason in words, whether the channel is at fault and should be replaced)."""
    if isinstance(error, PublishError):
        return "returned as unroutable", True
    if isinstance(error, DeliveryError):
        return "nacked by the broker", True
    if isinstance(error, ConnectionError):  # aiormq's connection errors are ConnectionErrors too
        return f"connection lost ({type(error).__name__})", False
    if isinstance(error, (aiormq.exceptions.AMQPChannelError, aiormq.exceptions.ChannelInvalidStateError)):
        return f"channel closed ({type(error).__name__})", True
    return f"{type(error).__name__}: {error}", True


async def publish_confirmed(
    link: BrokerLink,
    messages: Sequence[tuple[aio_pika.Message, str]],
    timeout_s: float,
    attempts: list[str] | None = None,
    wanted: Callable[[], bool] | None = None,
) -> None:
    """Publish each (message, routing key) to the topology's exchange; return once all are confirmed.

    Raises ``NotConfirmed`` with the last reason when ``timeout_s`` passes
    first, or as soon as ``wanted()`` (asked before each attempt) says the
    publish is no longer of use. ``attempts``, when given, collects the
    reason of each failed attempt (for logs and tests).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = list(messages)
    pause = FIRST_PAUSE_S
    failures: list[str] = attempts if attempts is not None else []
    waiting = ""
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                waiting = "waiting for the connection"
                if wanted is not None and not wanted():
                    raise NotConfirmed(f"given up: no longer wanted ({len(failures)} attempts failed)")
                try:
                    exchange = await link.publishing_exchange()
                except Exception as exc:  # a connection that will not open a channel is no use
                    failures.append(f"could not open a channel: {exc!r}")
                    link.reconnect(failures[-1])
                    exchange = None
                if exchange is not None:
                    waiting = "waiting for confirms"
                    results = await asyncio.gather(
                        *(exchange.publish(message, routing_key=key, mandatory=True) for message, key in pending),
                        return_exceptions=True,
                    )
                    errors = [r for r in results if isinstance(r, BaseException)]
                    pending = [p for p, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
                    if not pending:
                        return
                    reason, channel_at_fault = why_failed(errors[0])
                    failures.append(reason)
                    if channel_at_fault:
                        await link.renew_publishing(exchange, reason)
                waiting = "pausing before the next attempt"
                await asyncio.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)
        except TimeoutError:
            tried = f"; {len(failures)} attempts failed, the last: {failures[-1]}" if failures else ""
            raise NotConfirmed(f"the broker did not confirm within {timeout_s:g} s ({waiting}{tried})") from None
