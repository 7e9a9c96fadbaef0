"""Following the alert archive and the outcome stream, from the window's start and then live.

Each stream is read on a channel of its own with a prefetch (a stream
consumer must set one) and every delivery is acknowledged (on RabbitMQ
3.10-3.12 a reject closes a stream channel). After a reconnect, reading
goes on from the offset after the last one seen, so nothing is read twice
or missed. The outcome stream belongs to the dispatchers: it is looked for
now and then, and its absence is no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from console.outcomes import read_outcome
from console.timeline import OutcomeRecord
from openfero.records import Record
from openfero.replaying import ARCHIVE_LEAD
from shared.topology import Names

log = logging.getLogger("openfero.console")

_PREFETCH = 1000
_LOOK_FOR_OUTCOMES_S = 30.0


def outcome_stream(names: Names) -> str:
    """Where the dispatchers publish outcome records, beside the archive."""
    return f"{names.prefix}.outcomes"


class Follower:
    """Reads one stream into ``handle``; resumes where it stopped."""

    def __init__(self, queue: str, handle: Callable[[AbstractIncomingMessage], None], start: Callable[[], datetime]):
        self.queue = queue
        self.handle = handle
        self.start = start
        self.next_offset: int | None = None
        self.read = 0
        self.caught_up = asyncio.Event()
        self._last_delivery = 0.0

    def offset(self) -> Any:
        if self.next_offset is not None:
            return self.next_offset
        # Offsets by time are chunk-granular: start earlier, the handler filters exactly.
        return self.start() - ARCHIVE_LEAD

    async def consume(self, connection: AbstractConnection) -> AbstractChannel:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=_PREFETCH)
        queue = await channel.get_queue(self.queue, ensure=False)
        await queue.consume(self._on_message, arguments={"x-stream-offset": self.offset()})
        asyncio.get_running_loop().create_task(self._watch_catch_up(channel))
        return channel

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self._last_delivery = asyncio.get_running_loop().time()
        offset = (message.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self.next_offset = offset + 1
        self.read += 1
        try:
            self.handle(message)
        except Exception:  # one unreadable message must not stop the stream
            log.exception("stream message not understood", extra={"event": "console.stream_error", "queue": self.queue})

    async def _watch_catch_up(self, channel: AbstractChannel) -> None:
        """Caught up once the stream has been quiet for a moment (a stream never says it is at its end)."""
        loop = asyncio.get_running_loop()
        self._last_delivery = loop.time()
        while not channel.is_closed and not self.caught_up.is_set():
            await asyncio.sleep(0.2)
            if loop.time() - self._last_delivery > 0.5:
                self.caught_up.set()


class Streams:
    """The archive and, once it exists, the outcome stream; started again on every (re)connect."""

    def __init__(
        self,
        names: Names,
        window: timedelta,
        on_alert: Callable[[Record], None],
        on_outcome: Callable[[OutcomeRecord], None],
    ):
        self.names = names
        self.window = window
        self.on_alert = on_alert
        self.on_outcome = on_outcome
        self.archive = Follower(names.archive, self._alert, self._start)
        self.outcomes = Follower(outcome_stream(names), self._outcome, self._start)
        self.outcomes_found = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self) -> datetime:
        return datetime.now(timezone.utc) - self.window

    def _alert(self, message: AbstractIncomingMessage) -> None:
        record = Record.of(message.body, message.headers, message.message_id, dead=False)
        if record.envelope is not None and record.when is not None and record.when >= self._start():
            self.on_alert(record)

    def _outcome(self, message: AbstractIncomingMessage) -> None:
        record = read_outcome(message.body, message.message_id)
        if record is not None:
            self.on_outcome(record)

    async def on_connected(self, connection: AbstractConnection) -> None:
        await self.archive.consume(connection)
        task = asyncio.get_running_loop().create_task(self._look_for_outcomes(connection), name="outcome-stream")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _look_for_outcomes(self, connection: AbstractConnection) -> None:
        while not connection.is_closed:
            if await _exists(connection, self.outcomes.queue):
                if not self.outcomes_found:
                    log.info("outcome stream found", extra={"event": "console.outcomes_found", "queue": self.outcomes.queue})
                self.outcomes_found = True
                with contextlib.suppress(Exception):
                    channel = await self.outcomes.consume(connection)
                    await channel.closed()
                    return
            await asyncio.sleep(_LOOK_FOR_OUTCOMES_S)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _exists(connection: AbstractConnection, name: str) -> bool:
    """A passive lookup on a channel of its own: a missing queue closes the channel it was asked on."""
    try:
        channel = await connection.channel(publisher_confirms=False)
    except Exception:
        return False
    try:
        await channel.declare_queue(name, passive=True)
        return True
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            if not channel.is_closed:
                await channel.close()
