"""The dead-letter view: readings shared by every viewer, and replay and purge by message id.

The console never keeps dead letters. A reading is `openfero dlq list`'s:
every dead letter is taken unacknowledged, copied, and handed back
(openfero.replaying.DeadLetters.select). One reading at a time runs in a
console process and serves every viewer for OPENFERO_CONSOLE_DEAD_LETTERS_CACHE_SECONDS,
so a page shows a list at most that old, and says how old.

An action names the message ids the operator confirmed (never a filter
evaluated again later) and runs through the code of `openfero dlq replay
--id` and `openfero dlq purge --id`: a copy is confirmed in the work queue
before its dead letter is acknowledged, so nothing is lost, and an id
another viewer, replica or the CLI has replayed or purged meanwhile is
simply not found. One action at a time runs in a console process; its
progress is kept in memory of the process that runs it until it is read.

A reader takes every dead letter while it reads, and a replay holds them
all until it ends: a reading made in that time, by this console or
another, sees only what the other reader does not hold. The page says so
when the management API reports dead letters held unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from aio_pika.abc import AbstractConnection

from openfero.records import Filter, Record
from openfero.replaying import DeadLetters
from shared.topology import Names

log = logging.getLogger("openfero.console")

_OPERATIONS_KEPT = 50
# Ids not found at first may be in a concurrent reader's hands for a moment: looked for once more after this.
_RETRY_MISSING_S = 1.0


@dataclass(frozen=True)
class Reading:
    records: tuple[Record, ...]
    read_at: datetime
    error: str = ""

    @property
    def by_id(self) -> dict[str, Record]:
        return {r.id: r for r in self.records}


@dataclass
class Operation:
    id: str
    kind: str  # replay or purge
    ids: frozenset[str]
    user: str
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    state: str = "waiting"  # waiting, running, done, failed
    done: int = 0
    total: int | None = None
    found: int = 0
    error: str = ""
    finished: datetime | None = None

    @property
    def missing(self) -> int:
        return len(self.ids) - self.found if self.state == "done" else 0

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "selected": len(self.ids), "found": self.found,
            "done": self.done, "total": self.total, "missing": self.missing, "error": self.error,
        }


class DeadLetterDesk:
    def __init__(self, names: Names, connection: Callable[[], AbstractConnection | None], cache_s: float, on_reading: Callable[[Reading], None]):
        self.names = names
        self.connection = connection
        self.cache_s = cache_s
        self.on_reading = on_reading
        self.operations: OrderedDict[str, Operation] = OrderedDict()
        self._reading: Reading | None = None
        self._read_mono = 0.0
        self._read_lock = asyncio.Lock()  # one reading at a time
        self._act_lock = asyncio.Lock()  # one action at a time, and never beside a reading
        self._tasks: set[asyncio.Task[None]] = set()

    def _dead_letters(self) -> DeadLetters:
        connection = self.connection()
        if connection is None or connection.is_closed:
            raise ConnectionError("not connected to the broker")
        return DeadLetters(connection, self.names)

    async def reading(self, fresh: bool = False) -> Reading:
        """The latest reading, made now if it is older than the cache allows (or ``fresh``)."""
        async with self._read_lock:
            if not fresh and self._reading is not None and time.monotonic() - self._read_mono < self.cache_s:
                return self._reading
            if self._act_lock.locked():
                # An action of this console holds the dead letters: a reading now would find few or none,
                # and would wait for the action to end. The last reading stands meanwhile.
                return self._reading or Reading((), datetime.now(timezone.utc), "an action of this console is running: the list is read once it ends")
            async with self._act_lock:
                try:
                    result = await self._dead_letters().select(Filter())
                    reading = Reading(tuple(result.matched), datetime.now(timezone.utc))
                except Exception as exc:  # the broker away or refusing: shown on the page
                    reading = Reading(self._reading.records if self._reading else (), datetime.now(timezone.utc), f"{type(exc).__name__}: {exc}")
            self._reading, self._read_mono = reading, time.monotonic()
            if not reading.error:
                self.on_reading(reading)
            return reading

    def start(self, kind: str, ids: frozenset[str], user: str) -> Operation:
        """Start replaying or purging the dead letters ``ids``; their progress is in the Operation."""
        assert kind in ("replay", "purge")
        operation = Operation(uuid.uuid4().hex[:12], kind, ids, user)
        self.operations[operation.id] = operation
        while len(self.operations) > _OPERATIONS_KEPT:
            self.operations.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._run(operation), name=f"dead-letters-{kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return operation

    async def _run(self, operation: Operation) -> None:
        log.info(
            "dead letters %s started", operation.kind,
            extra={"event": f"console.{operation.kind}_started", "user": operation.user, "operation": operation.id, "selected": len(operation.ids)},
        )
        async with self._act_lock:
            operation.state = "running"
            try:
                remaining = set(operation.ids)
                for attempt in range(2):
                    act = self._dead_letters().replay if operation.kind == "replay" else self._dead_letters().purge
                    base = operation.done

                    def progress(done: int, total: int | None, base: int = base) -> None:
                        operation.done, operation.total = base + done, len(operation.ids)

                    result = await act(Filter(ids=frozenset(remaining)), progress)
                    operation.found += len(result.matched)
                    operation.done = base + result.done
                    remaining -= {r.id for r in result.matched}
                    if not remaining or attempt:
                        break
                    await asyncio.sleep(_RETRY_MISSING_S)
                operation.total = len(operation.ids)
                operation.state = "done"
            except Exception as exc:  # nothing is lost: what was not acknowledged is still a dead letter
                operation.state, operation.error = "failed", f"{type(exc).__name__}: {exc}"
            operation.finished = datetime.now(timezone.utc)
        self._read_mono = 0.0  # the next view reads again
        log.info(
            "dead letters %s %s", operation.kind, operation.state,
            extra={"event": f"console.{operation.kind}_{operation.state}", "user": operation.user, "operation": operation.id, **operation.summary()},
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 10)
