"""Reading, replaying and purging the dead-letter queue and the alert archive.

Nothing here loses a message when interrupted. Dead letters are taken
unacknowledged and acknowledged only after their copy in the work queue is
confirmed (replay) or when they are meant to go (purge); everything else
goes back when the channel closes. So an interrupted replay can duplicate,
which deterministic Job names make harmless, but never loses.

The archive is a stream: it is read from a point in time, every delivery is
acknowledged (on RabbitMQ 3.10-3.12 a reject closes a stream channel), and
the stream itself never changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from openfero.records import Filter, Record
from shared import headers as h
from shared.topology import RETRY_ROUTING_KEY, Names

# Called with (done, total); total is None where it is not known in advance.
Progress = Callable[[int, "int | None"], None]

# Headers about a past failure that a replay must not carry into its new attempts.
_FAILURE_HEADERS = {
    h.ATTEMPTS, h.ERROR, h.ERROR_CLASS, h.HTTP_STATUS, h.FIRST_FAILURE, h.LAST_FAILURE, h.WORKER, h.DEAD_REASON,
    # where a parked or waiting alert stood: a replay starts it afresh
    h.DEFINITION, h.TARGET, h.LIMIT, h.JOB, h.RECEIVED, h.WAITING_SINCE, h.PARKED_AT, h.ADMITTED, h.COOLDOWN_TARGET, h.COOLDOWN_SECONDS,
}
_BATCH = 200
_SETTLE_S = 3.0
# Stream offsets by time are chunk-granular; start this much earlier and filter exactly.
ARCHIVE_LEAD = timedelta(minutes=5)
# Reading goes on this far past the window: alerts reach the stream in
# publish order, which ingest replicas' clocks may disagree with by a little.
ARCHIVE_SKEW = timedelta(seconds=5)


@dataclass
class Result:
    matched: list[Record] = field(default_factory=list)
    read: int = 0
    done: int = 0  # replayed or purged

    @property
    def skipped(self) -> int:
        return self.read - len(self.matched)

    def counts(self) -> dict[str, int]:
        return {"read": self.read, "matched": len(self.matched), "done": self.done, "skipped": self.skipped}


def replay_message(record: Record, source: str, run_id: str = "") -> aio_pika.Message:
    """The copy of a record to put back in the work queue: failure headers gone, replay noted."""
    headers = {k: h.writable(v) for k, v in record.headers.items() if k not in _FAILURE_HEADERS and not k.startswith("x-")}
    headers.pop(h.RUN_ID, None)
    headers[h.REPLAYED_AT] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    headers[h.REPLAYED_FROM] = source
    if run_id:
        headers[h.RUN_ID] = run_id
    return aio_pika.Message(
        record.body,
        headers=headers,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=record.id,
    )


class DeadLetters:
    """The dead-letter queue (or the parked queue), held for one operation on a channel of its own."""

    def __init__(self, connection: AbstractConnection, names: Names, parked: bool = False):
        self.connection = connection
        self.names = names
        self.queue = names.parked_queue if parked else names.dead_queue
        self.source = "parked-queue" if parked else "dead-letter-queue"

    async def _take_all(self, channel: AbstractChannel) -> tuple[AbstractQueue, list[tuple[AbstractIncomingMessage, Record]]]:
        """Take every dead letter, unacknowledged, on ``channel``."""
        taken = []
        deadline = asyncio.get_running_loop().time() + _SETTLE_S
        while True:
            queue = await channel.declare_queue(self.queue, passive=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                taken.append((message, Record.of(message.body, message.headers, message.message_id, dead=True)))
            # Messages handed back a moment ago can be on their way into
            # the queue yet: take until it says it is empty.
            if not queue.declaration_result.message_count or asyncio.get_running_loop().time() > deadline:
                return queue, taken
            await asyncio.sleep(0.05)

    async def select(self, selector: Filter) -> Result:
        """Matching dead letters; all of them stay in the queue."""
        channel = await self.connection.channel()
        try:
            _, taken = await self._take_all(channel)
        finally:
            await channel.close()  # hands every message back
        await self._settled(len(taken))
        return Result(matched=[r for _, r in taken if selector.matches(r)], read=len(taken))

    async def _settled(self, expected: int) -> None:
        """Wait until what this tool handed back is in the queue again, so that the next command sees it."""
        channel = await self.connection.channel()
        try:
            deadline = asyncio.get_running_loop().time() + _SETTLE_S
            while asyncio.get_running_loop().time() < deadline:
                queue = await channel.declare_queue(self.queue, passive=True)
                if (queue.declaration_result.message_count or 0) >= expected:
                    return
                await asyncio.sleep(0.05)
        finally:
            await channel.close()

    async def replay(self, selector: Filter, progress: Progress = lambda done, total: None) -> Result:
        """Move matching dead letters back into the work queue, attempts reset."""

        async def move(channel: AbstractChannel, batch: list[tuple[AbstractIncomingMessage, Record]]) -> None:
            exchange = await channel.get_exchange(self.names.exchange, ensure=False)
            await asyncio.gather(
                *(
                    exchange.publish(replay_message(r, self.source), routing_key=RETRY_ROUTING_KEY, mandatory=True)
                    for _, r in batch
                )
            )
            for message, _ in batch:  # only now: the copies are confirmed
                await message.ack()

        return await self._each_batch(selector, move, progress)

    async def purge(self, selector: Filter, progress: Progress = lambda done, total: None) -> Result:
        """Delete matching dead letters."""

        async def drop(channel: AbstractChannel, batch: list[tuple[AbstractIncomingMessage, Record]]) -> None:
            for message, _ in batch:
                await message.ack()

        return await self._each_batch(selector, drop, progress)

    async def _each_batch(self, selector: Filter, act: Any, progress: Progress) -> Result:
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            queue, taken = await self._take_all(channel)
            chosen = [(m, r) for m, r in taken if selector.matches(r)]
            result = Result(matched=[r for _, r in chosen], read=len(taken))
            for start in range(0, len(chosen), _BATCH):
                batch = chosen[start : start + _BATCH]
                await act(channel, batch)
                # A barrier: the queue answers this only after the acks before
                # it. Acks still buffered when a channel closes are dropped
                # (measured on 3.10), and their messages would come back.
                await queue.get(no_ack=False, fail=False)
                result.done += len(batch)
                progress(result.done, len(chosen))
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        await self._settled(result.read - result.done)
        return result


class Archive:
    """The alert archive (a stream), read over a time window."""

    def __init__(self, connection: AbstractConnection, names: Names):
        self.connection = connection
        self.names = names

    async def replay(
        self,
        selector: Filter,
        dry_run: bool,
        force: bool,
        idle_s: float = 1.0,
        progress: Progress = lambda done, total: None,
    ) -> tuple[Result, str]:
        """Republish the archived alerts ``selector`` matches (its since/until are required).

        Returns the result and, with ``force``, the run id that gives the
        replayed alerts new Job names.
        """
        assert selector.since is not None and selector.until is not None
        run_id = uuid.uuid4().hex[:12] if force else ""
        result = Result()
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            await channel.set_qos(prefetch_count=_BATCH)  # a stream consumer must set one
            archive = await channel.declare_queue(self.names.archive, passive=True)
            exchange = await channel.get_exchange(self.names.exchange, ensure=False)
            pending: list[asyncio.Future[Any]] = []
            start = selector.since - ARCHIVE_LEAD
            async with archive.iterator(arguments={"x-stream-offset": start}) as messages:
                while True:
                    try:
                        message = await asyncio.wait_for(messages.__anext__(), timeout=idle_s)
                    except (TimeoutError, StopAsyncIteration):
                        break  # caught up with the end of the stream
                    await message.ack()
                    result.read += 1
                    record = Record.of(message.body, message.headers, message.message_id, dead=False)
                    if record.when is not None and record.when >= selector.until + ARCHIVE_SKEW:
                        break  # past the window, clock skew allowed for
                    if not selector.matches(record):
                        continue
                    result.matched.append(record)
                    if not dry_run:
                        copy = replay_message(record, "archive", run_id)
                        pending.append(asyncio.ensure_future(exchange.publish(copy, routing_key=RETRY_ROUTING_KEY, mandatory=True)))
                        if len(pending) >= _BATCH:
                            await asyncio.gather(*pending)
                            result.done += len(pending)
                            progress(result.done, None)
                            pending = []
            if pending:
                await asyncio.gather(*pending)
                result.done += len(pending)
                progress(result.done, None)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return result, run_id
