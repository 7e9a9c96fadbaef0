"""The consuming loop: messages in, outcomes turned into acks and rejects.

A message is acknowledged only after its outcome is final (the Job exists,
or there is nothing to do). Until then it stays on the broker, so a crash
or a lost connection hands it to another dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from dispatcher.handling import DeadLetter, Done, Handler, NothingToDo, Outcome, Retry
from shared.broker import BrokerLink
from shared.settings import BrokerSettings
from shared.topology import Declared

log = logging.getLogger("openfero.dispatcher")


class Dispatcher:
    def __init__(self, broker: BrokerSettings, handler: Handler, prefetch: int):
        self.handler = handler
        self.link = BrokerLink(broker, on_connected=self._consume, prefetch=prefetch)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.handled = 0
        self._last_activity = time.monotonic()
        self._consumer: tuple[Any, str] | None = None

    async def _consume(self, channel: AbstractChannel, declared: Declared) -> None:
        tag = await declared.work_queue.consume(self._on_message)
        self._consumer = (declared.work_queue, tag)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._last_activity = time.monotonic()
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        try:
            await self._process(message)
        finally:
            self.in_flight.discard(task)
            self.handled += 1
            self._last_activity = time.monotonic()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        context: dict[str, Any] = {
            "message_id": message.message_id,
            "delivery": (message.headers or {}).get("x-delivery-count", 0),
        }
        started = time.perf_counter()
        outcome: Outcome
        try:
            outcome = await self.handler.handle(message.body, context)
        except Exception as exc:  # a bug, not an input: hand the message back
            log.exception("handler failed", extra={**context, "event": "message.crashed"})
            outcome = Retry(f"handler crashed: {exc!r}")
        context["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        try:
            await self._settle(message, outcome, context)
        except Exception as exc:
            # The channel is gone: the broker redelivers the message.
            log.warning("could not settle message: %s", exc, extra={**context, "event": "message.unsettled"})

    async def _settle(self, message: AbstractIncomingMessage, outcome: Outcome, context: dict[str, Any]) -> None:
        if isinstance(outcome, Done):
            await message.ack()
            event = "job.created" if outcome.created else "job.duplicate"
            log.info("job %s", "created" if outcome.created else "exists already", extra={**context, "event": event})
        elif isinstance(outcome, NothingToDo):
            await message.ack()
            log.info(outcome.reason, extra={**context, "event": "alert.no_definition"})
        elif isinstance(outcome, Retry):
            await message.nack(requeue=True)
            log.warning(
                "will retry: %s",
                outcome.reason,
                extra={**context, "event": "message.retry", "http_status": outcome.status},
            )
        elif isinstance(outcome, DeadLetter):
            await message.reject(requeue=False)
            log.error(
                "dead-lettered: %s",
                outcome.reason,
                extra={**context, "event": "message.dead", "error_class": outcome.error_class},
            )

    async def run(self, stop: asyncio.Event, idle_exit_s: float | None = None) -> None:
        """Consume until ``stop`` is set, or, with ``idle_exit_s``, until the queue stays empty that long."""
        link_task = asyncio.create_task(self.link.run(), name="broker-link")
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.05)
                if idle_exit_s is not None and await self._idle_for(idle_exit_s):
                    break
        finally:
            await self.shutdown(link_task)

    async def _idle_for(self, seconds: float) -> bool:
        if self.in_flight or time.monotonic() - self._last_activity < seconds:
            return False
        declared = self.link.declared
        if declared is None or not self.link.ready.is_set():
            return False
        queue = await self.link.channel.declare_queue(declared.work_queue.name, passive=True)  # type: ignore[union-attr]
        return queue.declaration_result.message_count == 0

    async def shutdown(self, link_task: asyncio.Task[None], grace_s: float = 20.0) -> None:
        """Stop taking messages, let those in hand finish, then leave the broker."""
        if self._consumer is not None and self.link.ready.is_set():
            queue, tag = self._consumer
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=grace_s)
        await self.link.close()
        link_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link_task
